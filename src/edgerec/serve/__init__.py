"""``edgerec serve``: an HTTP JSON service over the runtime (``pip install edgerec[serve]``).

Starlette under uvicorn; ``POST /recommend`` requests that arrive together are
micro-batched into one ``recommend_batch`` call; ``POST /admin/reload`` (or SIGHUP)
swaps in a new bundle without failing a request. See ``edgerec.serve.app``.
"""

from edgerec.serve.app import ServeConfig, Service, create_app
from edgerec.serve.schema import Limits

__all__ = ["Limits", "ServeConfig", "Service", "create_app"]

"""edgerec: long/short-term interest recommender, trained in PyTorch and served by ONNX Runtime.

Importing the top-level package must stay cheap and torch-free: apps that embed
``edgerec.runtime`` install only numpy and onnxruntime.
"""

__version__ = "0.1.0"

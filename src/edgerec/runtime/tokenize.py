"""Item text -> token id arrays for the text-encoder graph, with the ``tokenizers`` library.

The bundle ships the text encoder's ``tokenizer.json``; using it through the Rust
``tokenizers`` package (not ``transformers``) keeps the runtime small while producing the
same ids the export saw. Truncation to the manifest's ``text_max_length`` and padding to
the longest text of a batch are set here, whatever the file said.
"""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer

from edgerec.errors import BundleError

# A text longer than this many characters per allowed token cannot contribute more
# tokens; cutting it first bounds the tokenizer's work on hostile or gigantic inputs.
_CHARS_PER_TOKEN_BOUND = 32


class TextTokenizer:
    def __init__(self, tokenizer_json: str, max_length: int, name: str = "tokenizer.json"):
        try:
            tok = Tokenizer.from_str(tokenizer_json)
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise BundleError(f"{name}: not a valid tokenizers file ({e})") from None
        padding = tok.padding or {}
        pad_id = padding.get("pad_id")
        pad_token = padding.get("pad_token")
        if pad_id is None:
            for candidate in ("[PAD]", "<pad>", "<PAD>"):
                if (found := tok.token_to_id(candidate)) is not None:
                    pad_id, pad_token = found, candidate
                    break
        tok.enable_truncation(max_length=max_length)
        tok.enable_padding(pad_id=pad_id or 0, pad_token=pad_token or "[PAD]")
        self._tok = tok
        self.max_length = max_length
        self._max_chars = max_length * _CHARS_PER_TOKEN_BOUND

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        """input_ids, attention_mask and token_type_ids as int64 (batch, tokens)."""
        encodings = self._tok.encode_batch([t[: self._max_chars] for t in texts])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        if ids.ndim != 2 or ids.shape[1] == 0:  # no special tokens and all texts empty
            ids = np.zeros((len(texts), 1), np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

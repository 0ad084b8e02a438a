"""Shared fixtures. Real data comes from EDGEREC_DATA_DIR; tests needing it skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def data_dir() -> Path | None:
    root = os.environ.get("EDGEREC_DATA_DIR")
    if not root:
        return None
    path = Path(root) / "movielens" / "ml-100k"
    return path if (path / "u.data").is_file() else None


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    path = data_dir()
    if path is None:
        pytest.skip(
            "MovieLens 100K not found: set EDGEREC_DATA_DIR to the folder holding movielens/ml-100k"
        )
    return path


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Text-embedding caches of the tests go to a temporary folder, never ~/.cache."""
    if "EDGEREC_CACHE_DIR" not in os.environ:
        os.environ["EDGEREC_CACHE_DIR"] = str(tmp_path_factory.mktemp("edgerec-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

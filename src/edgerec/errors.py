"""Exceptions shared by every layer.

Kept in a dependency-free module so the torch-free runtime and the pandas-based data
layer raise the same, documented types.
"""

from __future__ import annotations


class EdgerecError(Exception):
    """Base class of every error edgerec raises on purpose."""


class DataError(EdgerecError, ValueError):
    """Input data that cannot be used: names the file, the line and the problem."""


class BundleError(EdgerecError):
    """A bundle that fails verification: names the file and the problem."""


class UnknownItemError(EdgerecError, KeyError):
    """Item ids the model does not know, raised only in strict mode."""

    def __init__(self, unknown: list) -> None:
        self.unknown = list(unknown)
        shown = ", ".join(repr(x) for x in self.unknown[:10])
        more = f" (and {len(self.unknown) - 10} more)" if len(self.unknown) > 10 else ""
        super().__init__(f"unknown item ids: {shown}{more}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


class ParityError(EdgerecError):
    """An exported graph that does not reproduce the PyTorch model within tolerance."""

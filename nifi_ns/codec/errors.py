"""Errors raised by the Nix container decoder."""

from __future__ import annotations


class NixFormatError(ValueError):
    """A blob is not a valid Nix container: bad magic, unsupported version, truncation, CRC mismatch, bad header."""

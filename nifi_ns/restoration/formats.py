"""What kind of file a path holds, decided by its content (never by its name).

- ``safetensors``: 8-byte little-endian header length, then a JSON header starting with ``{``;
- ``npz``: a zip archive whose members are all ``*.npy`` (``numpy.savez``);
- ``torch``: a ``torch.save`` file (zip archive with a ``data.pkl`` member, or the legacy pickle format);
- ``unknown``: anything else. A missing path raises ``FileNotFoundError`` naming it.
"""
from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

_PICKLE_PROTOCOL_2_PLUS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def file_kind(path: str | os.PathLike, what: str = "file") -> str:
    """``"safetensors"``, ``"npz"``, ``"torch"`` or ``"unknown"`` (``what`` names the file in errors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} '{path}' does not exist")
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile:
            return "unknown"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch"
        return "unknown"
    if len(head) == 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len <= path.stat().st_size - 8:
            return "safetensors"
    if head[:2] in _PICKLE_PROTOCOL_2_PLUS:
        return "torch"
    return "unknown"

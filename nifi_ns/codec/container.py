"""The Nix container: a self-describing, checksummed byte layout.

    offset  size  field
    0       8     magic  b"\\x89NIX\\r\\n\\x1a\\n"  (PNG-style: catches text-mode mangling and truncation early)
    8       2     version (uint16 LE, currently 2; version 1 containers, written before the vector-quantisation
                  stages existed, are still read: their sections are a subset of version 2's)
    10      2     flags (uint16 LE, 0)
    12      4     header length H (uint32 LE)
    16      4     CRC-32 of the header bytes
    20      H     header: zlib-compressed UTF-8 JSON (shapes, quantization parameters, section table)
    20+H    ...   sections, back to back, in header order; each has its length and CRC-32 in the section table

Floats in the header are float32 values written as Python floats (exact round trip through JSON).
"""

from __future__ import annotations

import json
import struct
import zlib

from nifi_ns.codec.errors import NixFormatError

FORMAT_NAME = "nix-gaussians"  # the header's "format" field
MAGIC = b"\x89NIX\r\n\x1a\n"
VERSION = 2  # version 2: VQ stages, position contraction, outlier positions (all optional header fields)
READABLE_VERSIONS = (1, 2)
VERSION_2_FIELDS = ("cov_vq", "color_vq")  # optional header fields a version-1 container never has
VERSION_2_POSITION_FIELDS = ("contraction", "outliers")
_PREFIX = struct.Struct("<8sHHII")


def pack_container(header: dict, sections: dict[str, bytes], version: int = VERSION) -> bytes:
    header = dict(header)
    header["sections"] = [
        {"name": name, "length": len(data), "crc32": zlib.crc32(data)} for name, data in sections.items()
    ]
    head = zlib.compress(json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8"), 9)
    prefix = _PREFIX.pack(MAGIC, version, 0, len(head), zlib.crc32(head))
    return prefix + head + b"".join(sections.values())


def unpack_container(blob: bytes) -> tuple[dict, dict[str, bytes]]:
    """Parse and verify a container; raises NixFormatError naming the problem."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise NixFormatError(f"expected bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < _PREFIX.size:
        raise NixFormatError(f"truncated container: {len(blob)} bytes, the fixed prefix alone is {_PREFIX.size}")
    magic, version, _flags, head_len, head_crc = _PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise NixFormatError(f"not a Nix container (magic {magic!r}, expected {MAGIC!r})")
    if version not in READABLE_VERSIONS:
        raise NixFormatError(
            f"unsupported Nix container version {version} (this decoder reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}); re-encode it with a matching nifi_ns release"
        )
    end = _PREFIX.size + head_len
    if len(blob) < end:
        raise NixFormatError(f"truncated container: header needs {end} bytes, blob has {len(blob)}")
    head = blob[_PREFIX.size : end]
    if zlib.crc32(head) != head_crc:
        raise NixFormatError("corrupt container: header CRC-32 mismatch")
    from nifi_ns.codec.validation import MAX_HEADER_BYTES, validate_section_table

    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(head, MAX_HEADER_BYTES + 1)  # capped: a zip bomb cannot inflate past 1 MiB
        if len(text) > MAX_HEADER_BYTES or not inflater.eof:
            raise NixFormatError(f"corrupt container: header inflates past {MAX_HEADER_BYTES} bytes or is truncated")
        header = json.loads(text.decode("utf-8"))
        if not isinstance(header, dict):
            raise NixFormatError("corrupt container: header is not a JSON object")
        table = header.get("sections")
    except (zlib.error, UnicodeDecodeError, ValueError, RecursionError) as err:
        if isinstance(err, NixFormatError):
            raise
        raise NixFormatError(f"corrupt container: header not decodable ({type(err).__name__})") from None
    validate_section_table(table, len(blob))
    if version == 1 and any(k in header for k in VERSION_2_FIELDS) or (
        isinstance(header.get("position"), dict) and version == 1
        and any(k in header["position"] for k in VERSION_2_POSITION_FIELDS)
    ):
        raise NixFormatError("corrupt container: version 1 header with version-2 fields")
    sections, pos = {}, end
    for entry in table:
        name, length = entry["name"], entry["length"]
        if pos + length > len(blob):
            raise NixFormatError(
                f"truncated container: section '{name}' ends at byte {pos + length}, blob has {len(blob)}"
            )
        data = blob[pos : pos + length]
        if zlib.crc32(data) != entry["crc32"]:
            raise NixFormatError(f"corrupt container: section '{name}' CRC-32 mismatch")
        sections[name] = data
        pos += length
    if pos != len(blob):
        raise NixFormatError(f"corrupt container: {len(blob) - pos} unexpected bytes after the last section")
    return header, sections

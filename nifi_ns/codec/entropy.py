"""Entropy coding of integer symbol streams.

Default coder: range-ANS (`constriction.stream.stack.AnsCoder`) with a static categorical model built from
the stream's own histogram. The histogram travels with the stream (LEB128 varints, zlib), so the decoder
rebuilds the identical fixed-point model and decoding is exact. Alphabets wider than 12 bits are split into
8-bit planes so histograms stay small. `lzma` (stdlib) over the raw little-endian symbols is the baseline coder.
"""

from __future__ import annotations

import lzma
import struct
import zlib

import numpy as np

from nifi_ns.codec.config import CODERS
from nifi_ns.codec.errors import NixFormatError

_TAGS = {"rans": 0, "lzma": 1}
_MAX_DIRECT_BITS = 12
_CONTEXT_CHOICES = (1, 2, 4, 8, 16)


def _varints(values: np.ndarray) -> bytes:
    out = bytearray()
    for v in values.tolist():
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


def _read_varints(buf: bytes, count: int) -> np.ndarray:
    values, v, shift = [], 0, 0
    for byte in buf:
        v |= (byte & 0x7F) << shift
        shift += 7
        if shift > 63:
            raise NixFormatError("histogram count wider than 63 bits")
        if not byte & 0x80:
            values.append(v)
            v, shift = 0, 0
    if len(values) != count or shift:
        raise NixFormatError(f"histogram holds {len(values)} counts, expected {count}")
    return np.asarray(values, dtype=np.int64)


def _categorical(counts: np.ndarray):
    import constriction  # submodules are extension attributes, not importable modules

    return constriction.stream.model.Categorical(counts.astype(np.float64) / float(counts.sum()), perfect=False)


def _rans_encode_plane(symbols: np.ndarray, alphabet: int) -> bytes:
    import constriction

    counts = np.bincount(symbols, minlength=alphabet)
    hist = zlib.compress(_varints(counts), 9)
    coder = constriction.stream.stack.AnsCoder()
    if symbols.size:
        coder.encode_reverse(symbols.astype(np.int32), _categorical(counts))
    words = coder.get_compressed().astype("<u4").tobytes()
    return struct.pack("<II", alphabet, len(hist)) + hist + words


def _rans_decode_plane(buf: bytes, count: int, expected_alphabet: int) -> np.ndarray:
    import constriction

    if len(buf) < 8:
        raise NixFormatError("entropy-coded plane shorter than its 8-byte header")
    alphabet, hist_len = struct.unpack_from("<II", buf)
    if alphabet != expected_alphabet or 8 + hist_len > len(buf):
        raise NixFormatError(f"bad entropy-plane header (alphabet {alphabet}, expected {expected_alphabet}; "
                             f"histogram {hist_len} bytes)")
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(buf[8 : 8 + hist_len], 10 * alphabet + 1)  # <= 10 varint bytes per count
        if not inflater.eof:
            raise NixFormatError("histogram inflates past its alphabet's size or is truncated")
        counts = _read_varints(raw, alphabet)
    except zlib.error as err:
        raise NixFormatError(f"histogram not decodable: {err}") from err
    if counts.sum() != count:
        raise NixFormatError(f"histogram sums to {counts.sum()} symbols, header says {count}")
    if count == 0:
        return np.zeros(0, np.int64)
    if (len(buf) - 8 - hist_len) % 4:
        raise NixFormatError("entropy-coded plane is not a whole number of 32-bit words")
    words = np.frombuffer(buf[8 + hist_len :], dtype="<u4").astype(np.uint32)
    p = counts[counts > 0] / count
    min_bits = float(count * -(p * np.log2(p)).sum())  # Shannon bound: a shorter stream cannot hold these symbols
    if 32 * words.size + 64 < min_bits * 0.99:
        raise NixFormatError(f"entropy-coded plane of {words.size} words cannot hold {count} symbols")
    try:
        decoded = constriction.stream.stack.AnsCoder(words).decode(_categorical(counts), count).astype(np.int64)
    except (ValueError, RuntimeError, OverflowError) as err:
        raise NixFormatError(f"entropy-coded plane not decodable ({err})") from None
    if not np.array_equal(np.bincount(decoded, minlength=alphabet), counts):
        raise NixFormatError("entropy-decoded symbols do not match the stored histogram (corrupt stream)")
    return decoded


def _planes(bits: int) -> list[int]:
    """Bit widths of the planes, most significant first."""
    if bits <= _MAX_DIRECT_BITS:
        return [bits]
    widths = []
    while bits > 8:
        widths.append(8)
        bits -= 8
    return [bits] + widths


def encode_symbols(symbols: np.ndarray, bits: int, coder: str = "rans") -> bytes:
    """Encode non-negative integers < 2**bits (bits <= 32)."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    if symbols.size and (symbols.min() < 0 or symbols.max() >= (1 << bits)):
        raise ValueError(f"symbols out of range for {bits} bits")
    if coder == "lzma":
        dtype = "<u1" if bits <= 8 else "<u2" if bits <= 16 else "<u4"
        return lzma.compress(symbols.astype(dtype).tobytes(), preset=6)  # 9 is 2x slower, same size here
    if coder != "rans":
        raise ValueError(f"unknown entropy coder {coder!r}; choose one of {CODERS}")
    if bits < 1:
        raise ValueError("symbol streams need at least 1 bit")
    out, shift = bytearray(), bits
    for width in _planes(bits):
        shift -= width
        plane = (symbols >> shift) & ((1 << width) - 1)
        encoded = _rans_encode_plane(plane, 1 << width)
        out += struct.pack("<I", len(encoded)) + encoded
    return bytes(out)


def decode_symbols(buf: bytes, count: int, bits: int, coder: str = "rans") -> np.ndarray:
    """Inverse of `encode_symbols`; raises NixFormatError on malformed input."""
    if coder == "lzma":
        dtype = "<u1" if bits <= 8 else "<u2" if bits <= 16 else "<u4"
        expected = count * np.dtype(dtype).itemsize
        try:
            inflater = lzma.LZMADecompressor()
            raw = inflater.decompress(buf, max_length=expected + 1)  # capped by what the header implies
        except lzma.LZMAError as err:
            raise NixFormatError(f"lzma stream not decodable: {err}") from err
        if len(raw) != expected or not inflater.eof or inflater.unused_data:
            raise NixFormatError(f"lzma stream does not hold exactly {count} symbols of {dtype}")
        result = np.frombuffer(raw, dtype=dtype).astype(np.int64)
        if result.size and result.max() >= (1 << bits):
            raise NixFormatError(f"lzma stream holds symbols wider than {bits} bits")
        return result
    if coder != "rans":
        raise NixFormatError(f"unknown entropy coder {coder!r}")
    result, pos = np.zeros(count, np.int64), 0
    for width in _planes(bits):
        if pos + 4 > len(buf):
            raise NixFormatError("entropy stream truncated")
        (length,) = struct.unpack_from("<I", buf, pos)
        if pos + 4 + length > len(buf):
            raise NixFormatError("entropy stream truncated")
        result = (result << width) | _rans_decode_plane(buf[pos + 4 : pos + 4 + length], count, 1 << width)
        pos += 4 + length
    if pos != len(buf):
        raise NixFormatError(f"{len(buf) - pos} trailing bytes after entropy stream")
    return result


def pack_varbits(values: np.ndarray, lengths: np.ndarray) -> bytes:
    """Concatenate values[i] written MSB-first with lengths[i] bits (lengths <= 63); raw, no modelling."""
    values = np.asarray(values, np.uint64)
    lengths = np.asarray(lengths, np.int64)
    chunks = []
    for start in range(0, values.size, 1 << 15):
        v, ln = values[start : start + (1 << 15)], lengths[start : start + (1 << 15)]
        width = int(ln.max()) if ln.size else 0
        if width == 0:
            continue
        j = np.arange(width)
        shift = (ln[:, None] - 1 - j[None, :]).clip(min=0).astype(np.uint64)
        bits = ((v[:, None] >> shift) & np.uint64(1)).astype(np.uint8)
        chunks.append(bits[j[None, :] < ln[:, None]])
    flat = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return np.packbits(flat).tobytes()


def unpack_varbits(buf: bytes, lengths: np.ndarray) -> np.ndarray:
    """Inverse of `pack_varbits` given the same lengths."""
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    if (total + 7) // 8 != len(buf):
        raise NixFormatError(f"raw bit section has {len(buf)} bytes, expected {(total + 7) // 8}")
    bits = np.unpackbits(np.frombuffer(buf, np.uint8))[:total].astype(np.uint64)
    offsets = np.cumsum(lengths) - lengths
    out = np.zeros(lengths.size, np.uint64)
    for start in range(0, lengths.size, 1 << 15):
        ln, off = lengths[start : start + (1 << 15)], offsets[start : start + (1 << 15)]
        width = int(ln.max()) if ln.size else 0
        if width == 0:
            continue
        j = np.arange(width)
        mask = j[None, :] < ln[:, None]
        idx = np.where(mask, off[:, None] + j[None, :], 0)
        shift = (ln[:, None] - 1 - j[None, :]).clip(min=0).astype(np.uint64)
        out[start : start + ln.size] = np.where(mask, bits[idx] << shift, np.uint64(0)).sum(axis=1, dtype=np.uint64)
    return out


def context_buckets(reference: np.ndarray, num_contexts: int) -> np.ndarray:
    """Equal-population buckets of an already-coded integer stream (integer-only, so encoder == decoder)."""
    reference = np.asarray(reference, np.int64)
    if num_contexts <= 1 or reference.size == 0:
        return np.zeros(reference.size, np.int64)
    ranked = np.sort(reference)
    edges = ranked[(np.arange(1, num_contexts) * reference.size) // num_contexts]
    return np.searchsorted(edges, reference, side="right").astype(np.int64)


def encode_with_context(symbols: np.ndarray, bits: int, reference: np.ndarray | None, coder: str = "rans") -> bytes:
    """rANS with one histogram per bucket of `reference` (a stream the decoder already has, e.g. the previous
    channel of the same Gaussian). The bucket count (1 = plain order-0) is chosen by trying each and keeping
    the shortest, so conditioning never costs more than a byte. lzma ignores the reference."""
    symbols = np.asarray(symbols, np.int64).ravel()
    if coder != "rans" or reference is None:
        return encode_symbols(symbols, bits, coder)
    best = None
    for k in _CONTEXT_CHOICES:
        if k > 1 and symbols.size < 2048 * k:  # too few symbols to pay for k histograms
            break
        ctx = context_buckets(reference, k)
        out = bytearray([k])
        for c in range(k):
            part = encode_symbols(symbols[ctx == c], bits, coder)
            out += struct.pack("<I", len(part)) + part
        if best is None or len(out) < len(best):
            best = bytes(out)
    return best


def decode_with_context(
    buf: bytes, count: int, bits: int, reference: np.ndarray | None, coder: str = "rans"
) -> np.ndarray:
    """Inverse of `encode_with_context` given the same `reference`."""
    if coder != "rans" or reference is None:
        return decode_symbols(buf, count, bits, coder)
    if not buf or buf[0] not in _CONTEXT_CHOICES:
        raise NixFormatError("context-coded stream has an invalid bucket count")
    k, pos = buf[0], 1
    ctx = context_buckets(reference, k)
    out = np.zeros(count, np.int64)
    for c in range(k):
        if pos + 4 > len(buf):
            raise NixFormatError("context-coded stream truncated")
        (length,) = struct.unpack_from("<I", buf, pos)
        mask = ctx == c
        out[mask] = decode_symbols(buf[pos + 4 : pos + 4 + length], int(mask.sum()), bits, coder)
        pos += 4 + length
    if pos != len(buf):
        raise NixFormatError(f"{len(buf) - pos} trailing bytes after context-coded stream")
    return out


def encode_stream(symbols: np.ndarray, bits: int, reference: np.ndarray | None = None, coder: str = "auto") -> bytes:
    """One tagged section: a tag byte (0 = rANS with context buckets, 1 = lzma) then the payload.

    `auto` encodes both and keeps the shorter: rANS wins on i.i.d.-like streams, lzma on streams with repeats
    along the Morton order (its match finder sees neighbouring Gaussians)."""
    if coder not in CODERS:
        raise ValueError(f"unknown entropy coder {coder!r}; choose one of {CODERS}")
    candidates = ("rans", "lzma") if coder == "auto" else (coder,)
    best = None
    for name in candidates:
        payload = encode_with_context(symbols, bits, reference, name)
        if best is None or len(payload) + 1 < len(best):
            best = bytes([_TAGS[name]]) + payload
    return best


def decode_stream(buf: bytes, count: int, bits: int, reference: np.ndarray | None = None) -> np.ndarray:
    """Inverse of `encode_stream`."""
    if not buf:
        raise NixFormatError("empty entropy-coded section")
    names = {v: k for k, v in _TAGS.items()}
    if buf[0] not in names:
        raise NixFormatError(f"unknown entropy coder tag {buf[0]}")
    return decode_with_context(buf[1:], count, bits, reference, names[buf[0]])

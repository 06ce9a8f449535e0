"""Crafted and corrupted Nix containers fail as NixFormatError: never a crash, a hang, or wrong data with exit 0.

A real container (1,500 Gaussians of the guitar splat; a second one with SH degree 1 added so the SH sections are
covered) is truncated, bit-flipped (with and without recomputed CRCs) and given crafted headers. Every decode must
either raise `NixFormatError` or return finite Gaussians inside the header's quantization ranges. Seeded.
"""
from __future__ import annotations

import copy
import lzma
import signal
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from nifi_ns.codec import CodecConfig, NixFormatError, compress, decompress, read_header
from nifi_ns.codec.container import MAGIC, VERSION, pack_container, unpack_container
from nifi_ns.codec.entropy import decode_symbols
from nifi_ns.io import GaussianSplat, read_ply
from conftest import GUITAR

pytestmark = pytest.mark.skipif(not GUITAR.is_file(), reason=f"guitar splat not found at {GUITAR}")
NASTY = [float("nan"), float("inf"), -float("inf"), 1e39, -1e39, -1, 0, 1, 2, 5, 22, 2**31, 2**64, 10**12, 1.5,
         True, None, "x", [], {}, [1, 2], [float("nan")] * 3, [1e30, 1e30, 1e30], [-3e38, 0, 0]]


@pytest.fixture(scope="module")
def containers() -> list[bytes]:
    guitar = read_ply(GUITAR).subset(slice(0, 1500))
    config = CodecConfig(sh_codebook_size=32, kmeans_iters=2)
    rng = np.random.default_rng(0)
    rest = (0.05 * rng.standard_normal((guitar.num_gaussians, 3, 3))).astype(np.float32)
    with_sh = GaussianSplat(guitar.means, guitar.scales, guitar.quats, guitar.opacities, guitar.features_dc, rest, 1)
    return [compress(guitar, config=config), compress(with_sh, config=config)]


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def check(blob: bytes) -> str:
    """Decode under a 20 s alarm; 'rejected' or 'decoded' (after checking the result), anything else fails."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)
    try:
        splat = decompress(blob)
    except NixFormatError:
        return "rejected"
    except _Hang:
        pytest.fail("decoder hung on a crafted container")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    header = read_header(blob)
    assert splat.num_gaussians == header["num_gaussians"]
    for name in ("means", "scales", "quats", "opacities", "features_dc", "features_rest"):
        assert np.isfinite(getattr(splat, name)).all(), name
    for key, values in (("position", splat.means), ("scale", splat.scales), ("color", splat.features_dc)):
        lo, hi = np.float32(header[key]["lo"]), np.float32(header[key]["hi"])
        slack = 1e-5 * np.maximum(1, np.abs(hi) + np.abs(lo))
        assert (values >= lo - slack).all() and (values <= hi + slack).all(), key
    assert np.allclose(np.linalg.norm(splat.quats, axis=1), 1, atol=1e-2)
    return "decoded"


def repack(header: dict, sections: dict[str, bytes]) -> bytes:
    header = {k: v for k, v in header.items() if k != "sections"}
    return pack_container(header, sections)


def raw_header_blob(text: bytes, body: bytes = b"") -> bytes:
    """A container whose (valid-CRC) header is exactly `text` (JSON or not)."""
    head = zlib.compress(text, 9)
    return struct.pack("<8sHHII", MAGIC, VERSION, 0, len(head), zlib.crc32(head)) + head + body


def test_valid_containers_decode(containers):
    assert [check(b) for b in containers] == ["decoded", "decoded"]


@pytest.mark.parametrize("path,value", [
    (("position", "lo"), [float("nan"), 0.0, 0.0]),
    (("position", "hi"), [float("inf"), 0.0, 0.0]),
    (("scale", "lo"), [1e39, 0.0, 0.0]),
    (("color", "lo"), [10.0, 10.0, 10.0]),  # lo > hi
    (("position",), {"bits": 16, "lo": [-3e38] * 3, "hi": [3e38] * 3}),  # hi - lo overflows float32
    (("position", "bits"), 22), (("position", "bits"), 0), (("scale", "bits"), 2.5), (("opacity", "bits"), True),
    (("rotation", "bits"), 13), (("color", "bits"), "7"),
    (("sh_degree",), 1), (("sh_degree",), 5), (("sh_degree",), -1), (("sh_degree",), "0"),
    (("num_gaussians",), 10**12), (("num_gaussians",), 0), (("num_gaussians",), 1501), (("num_gaussians",), 1499),
    (("num_gaussians",), 1.5e3),
    (("format",), "other"), (("position",), None), (("scale",), [1, 2]),
])
def test_crafted_header_fields_are_rejected(containers, path, value):
    header, sections = unpack_container(containers[0])
    target = header
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(NixFormatError):
        decompress(repack(header, sections))


def test_crafted_sh_and_sections_are_rejected(containers):
    header, sections = unpack_container(containers[1])
    cases = []
    h = copy.deepcopy(header)
    h["sh_degree"] = 0  # drops the SH bands silently unless the section set is checked
    cases.append((h, sections))
    h = copy.deepcopy(header)
    h["sh_rest"]["dim"] = 24
    cases.append((h, sections))
    h = copy.deepcopy(header)
    h["sh_rest"]["codebook_size"] = 70000
    cases.append((h, sections))
    s = dict(sections)
    s["sh_codebook"] = np.full(len(s["sh_codebook"]) // 2, np.inf, "<f2").tobytes()  # non-finite decoded SH
    cases.append((header, s))
    s = dict(sections)
    s["opacity_table"] = np.full(len(s["opacity_table"]) // 4, np.nan, "<f4").tobytes()
    cases.append((header, s))
    s = dict(sections)
    del s["rot_2"]
    cases.append((header, s))
    s = dict(sections)
    s["extra"] = b"x"
    cases.append((header, s))
    for h, s in cases:
        with pytest.raises(NixFormatError):
            decompress(repack(h, s))


@pytest.mark.parametrize("text", [
    b"[" * 100000 + b"]" * 100000,  # RecursionError in json
    b'{"sections": "x"}', b'{"sections": [1]}', b'{"sections": [{"name": 1}]}', b'{"sections": [{"name": "a"}]}',
    b'{"sections": [{"name": "a", "length": -1, "crc32": 0}]}', b'{"sections": [{"name": "a", "length": "3"}]}',
    b'{"sections": [{"name": "a", "length": 0, "crc32": 0}, {"name": "a", "length": 0, "crc32": 0}]}',
    b'{"sections": []}', b"[]", b"null", b"\xff\xfe", b"{" * 10,
])
def test_malformed_headers_are_rejected(text):
    with pytest.raises(NixFormatError):
        decompress(raw_header_blob(text))


def test_zip_bomb_header_is_rejected():
    with pytest.raises(NixFormatError, match="inflates"):
        decompress(raw_header_blob(b" " * (4 << 20)))


def test_lzma_bomb_is_capped(containers):
    """A small lzma section that inflates far beyond what the header implies stops at the implied size."""
    bomb = lzma.compress(bytes(64 << 20), preset=0)
    assert len(bomb) < (1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(NixFormatError, match="lzma"):
            decode_symbols(bomb, 1500, 7, "lzma")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (8 << 20)
    header, sections = unpack_container(containers[0])
    with pytest.raises(NixFormatError):
        decompress(repack(header, {**sections, "scale_0": b"\x01" + bomb}))


def test_symbols_beyond_the_bit_width_are_rejected(containers):
    """An lzma stream of 8-bit symbols where the header says 7 bits would dequantize beyond the range."""
    header, sections = unpack_container(containers[0])
    wide = lzma.compress(np.full(1500, 255, np.uint8).tobytes())
    with pytest.raises(NixFormatError):
        decompress(repack(header, {**sections, "scale_0": b"\x01" + wide}))


def test_seeded_fuzz(containers):
    rng = np.random.default_rng(1234)
    outcomes = {"rejected": 0, "decoded": 0}
    for blob in containers:
        header, sections = unpack_container(blob)
        names = list(sections)
        for _ in range(60):  # truncations
            outcomes[check(blob[: int(rng.integers(0, len(blob)))])] += 1
        for _ in range(60):  # raw flips: the CRCs catch them
            data = bytearray(blob)
            for pos in rng.integers(0, len(data), int(rng.integers(1, 5))):
                data[pos] ^= 1 << int(rng.integers(0, 8))
            outcomes[check(bytes(data))] += 1
        for _ in range(150):  # flips inside one section, CRC recomputed: reaches the entropy decoders
            name = names[int(rng.integers(0, len(names)))]
            data = bytearray(sections[name])
            if not data:
                continue
            for pos in rng.integers(0, len(data), int(rng.integers(1, 4))):
                data[pos] ^= 1 << int(rng.integers(0, 8))
            outcomes[check(repack(header, {**sections, name: bytes(data)}))] += 1
        for _ in range(30):  # section truncated or extended, CRC recomputed
            name = names[int(rng.integers(0, len(names)))]
            data = sections[name]
            cut = data[: int(rng.integers(0, len(data) + 1))] if rng.random() < 0.5 else data + bytes(
                rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
            outcomes[check(repack(header, {**sections, name: cut}))] += 1
        fields = [("num_gaussians",), ("sh_degree",), ("format",)] + [
            (k, f) for k in ("position", "scale", "color") for f in ("lo", "hi", "bits")
        ] + [("rotation", "bits"), ("opacity", "bits")]
        if "sh_rest" in header:
            fields += [("sh_rest", f) for f in ("codebook_size", "dim", "label_bits")]
        for _ in range(100):  # crafted headers with valid CRCs
            h = copy.deepcopy(header)
            path = fields[int(rng.integers(0, len(fields)))]
            target = h
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = copy.deepcopy(NASTY[int(rng.integers(0, len(NASTY)))])
            outcomes[check(repack(h, sections))] += 1
    assert outcomes["rejected"] > 500 and sum(outcomes.values()) > 700

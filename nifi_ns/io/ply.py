"""Re-export of :mod:`difix_ns.splat_io.ply` (PLY I/O lives in difix_ns so both packages use it)."""

from difix_ns.splat_io.ply import (
    PLAYCANVAS_CHUNK_SIZE,
    inria_ply_num_bytes,
    read_inria_ply,
    read_playcanvas_compressed_ply,
    read_ply,
    write_ply,
)

__all__ = [
    "PLAYCANVAS_CHUNK_SIZE",
    "inria_ply_num_bytes",
    "read_inria_ply",
    "read_playcanvas_compressed_ply",
    "read_ply",
    "write_ply",
]

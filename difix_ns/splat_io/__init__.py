"""Gaussian-splat container and PLY I/O (INRIA 3DGS layout, PlayCanvas compressed PLY), shared by difix_ns and
nifi_ns (``nifi_ns.io`` re-exports it)."""

from difix_ns.splat_io.gaussians import GAUSS_PARAM_KEYS, SH_C0, GaussianSplat, num_sh_rest, sh_degree_from_rest
from difix_ns.splat_io.ply import (
    inria_ply_num_bytes,
    read_inria_ply,
    read_playcanvas_compressed_ply,
    read_ply,
    write_ply,
)

__all__ = [
    "GAUSS_PARAM_KEYS",
    "SH_C0",
    "GaussianSplat",
    "inria_ply_num_bytes",
    "num_sh_rest",
    "read_inria_ply",
    "read_playcanvas_compressed_ply",
    "read_ply",
    "sh_degree_from_rest",
    "write_ply",
]

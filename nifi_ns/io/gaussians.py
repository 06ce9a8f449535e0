"""Re-export of :mod:`difix_ns.splat_io.gaussians` (the splat container lives in difix_ns so both packages use it)."""

from difix_ns.splat_io.gaussians import (
    GAUSS_PARAM_KEYS,
    SH_C0,
    GaussianSplat,
    logits_from_sh_dc,
    num_sh_rest,
    sh_dc_from_logits,
    sh_degree_from_rest,
)

__all__ = ["GAUSS_PARAM_KEYS", "SH_C0", "GaussianSplat", "logits_from_sh_dc", "num_sh_rest", "sh_dc_from_logits",
           "sh_degree_from_rest"]

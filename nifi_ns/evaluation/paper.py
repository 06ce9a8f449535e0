"""NiFi paper Table 1 (``ceteke/nifi/assets/results.png``; reference nifi.md §2.1) and the comparison with it.

Cells are LPIPS / DISTS of HAC++ renders restored by NiFi at HAC++ λ ∈ {0.1, 0.5, 1.0} (larger λ = smaller file).
A comparison is only meaningful on the same data, codec and rate; the JSON says which of these differ.
"""
from __future__ import annotations

from typing import Optional

PAPER_NIFI_TABLE1 = {
    "mipnerf360": {"0.1": (0.178, 0.109), "0.5": (0.235, 0.133), "1.0": (0.265, 0.153)},
    "tanks_temples": {"0.1": (0.128, 0.076), "0.5": (0.180, 0.095), "1.0": (0.212, 0.109)},
    "deepblending": {"0.1": (0.133, 0.101), "0.5": (0.180, 0.131), "1.0": (0.218, 0.156)},
}
PAPER_HACPP_TABLE1 = {  # the unrestored HAC++ renders of the same table (the paper's "before")
    "mipnerf360": {"0.1": (0.285, 0.158), "0.5": (0.409, 0.201), "1.0": (0.455, 0.220)},
    "tanks_temples": {"0.1": (0.210, 0.113), "0.5": (0.317, 0.169), "1.0": (0.364, 0.193)},
    "deepblending": {"0.1": (0.201, 0.161), "0.5": (0.282, 0.215), "1.0": (0.337, 0.249)},
}
PAPER_SIZES_MB = {
    "mipnerf360": {"0.1": 1.152, "0.5": 0.357, "1.0": 0.223},
    "tanks_temples": {"0.1": 1.312, "0.5": 0.381, "1.0": 0.230},
    "deepblending": {"0.1": 0.599, "0.5": 0.183, "1.0": 0.110},
}
_ALIASES = {
    "mipnerf360": ("mipnerf360", "mip360", "mip-nerf360", "mip_nerf360", "mipnerf_360", "m360"),
    "tanks_temples": ("tanks_temples", "tanksandtemples", "tanks_and_temples", "tandt", "tnt", "t&t"),
    "deepblending": ("deepblending", "deep_blending", "db"),
}


def canonical_dataset(name: str) -> Optional[str]:
    key = name.lower().replace(" ", "_")
    for canon, aliases in _ALIASES.items():
        if key in aliases or key.replace("-", "_") in aliases:
            return canon
    return None


def canonical_rate(label: str) -> Optional[str]:
    try:
        return repr(float(label))
    except ValueError:
        return None


def paper_comparison(per_dataset_rate: dict) -> dict:
    """Deltas (ours - paper) of LPIPS/DISTS after restoration for every (dataset, rate) that Table 1 has."""
    entries, unmatched = [], []
    for key, agg in per_dataset_rate.items():
        dataset, rate = key.rsplit("/", 1)
        canon, r = canonical_dataset(dataset), canonical_rate(rate)
        if canon is None or r not in PAPER_NIFI_TABLE1.get(canon, {}):
            unmatched.append(key)
            continue
        p_lpips, p_dists = PAPER_NIFI_TABLE1[canon][r]
        h_lpips, h_dists = PAPER_HACPP_TABLE1[canon][r]
        entries.append({
            "dataset": dataset, "paper_dataset": canon, "rate": r, "count": agg.get("count"),
            "ours_lpips_before": agg.get("lpips_before"), "ours_lpips_after": agg.get("lpips_after"),
            "ours_dists_before": agg.get("dists_before"), "ours_dists_after": agg.get("dists_after"),
            "paper_nifi_lpips": p_lpips, "paper_nifi_dists": p_dists,
            "paper_hacpp_lpips": h_lpips, "paper_hacpp_dists": h_dists, "paper_size_mb": PAPER_SIZES_MB[canon][r],
            "delta_lpips_after_vs_paper": _sub(agg.get("lpips_after"), p_lpips),
            "delta_dists_after_vs_paper": _sub(agg.get("dists_after"), p_dists),
            "delta_lpips_before_vs_paper_hacpp": _sub(agg.get("lpips_before"), h_lpips),
            "delta_dists_before_vs_paper_hacpp": _sub(agg.get("dists_before"), h_dists),
        })
    return {
        "source": "NiFi Table 1 (ceteke/nifi assets/results.png), NiFi row; HAC++ row as the paper's 'before'",
        "note": ("Only comparable when the degraded renders are HAC++ at the same λ on the same scenes and the same "
                 "LPIPS backbone is used; the paper does not state its LPIPS backbone. Pairs from this project's codec "
                 "or a synthetic degradation are a different rate axis."),
        "entries": entries, "unmatched_groups": sorted(unmatched),
    }


def _sub(a, b):
    return None if a is None or b is None else a - b

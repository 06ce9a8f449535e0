"""Rate control: the largest Gaussian budget whose container fits a target size (a secant / bisection search over
``encode.encode_budget``)."""

from __future__ import annotations

from nifi_ns.codec.encode import encode_budget
from nifi_ns.codec.report import MB


def search_budget(splat, order, n_max, cfg, extra, target_bytes, tolerance):
    """Largest budget whose container fits `target_bytes`, accepting any fit within `tolerance` below it.

    Size is close to affine in the Gaussian count (a fixed overhead of header, histograms and tables plus a
    per-Gaussian cost), so a secant step between two measured bracketing encodes converges in a few encodes.
    The bracket starts at one Gaussian (whose size *is* the overhead; assuming zero bytes there made the secant
    crawl down from above on small targets and give up), and a secant step that does not halve the bracket is
    followed by a bisection step, so the search always ends on a fitting budget.
    """
    tried: dict[int, tuple] = {}

    def size(n: int) -> int:
        if n not in tried:
            tried[n] = encode_budget(splat, order, n, cfg, extra)
        return len(tried[n][0])

    if size(n_max) <= target_bytes:
        return tried[n_max]
    if size(1) > target_bytes:
        raise ValueError(
            f"target {target_bytes / MB:.4f} MB is below the smallest container for this input "
            f"({size(1) / MB:.4f} MB with one Gaussian at these quantization settings)"
        )
    lo, s_lo = 1, size(1)
    hi, s_hi = n_max, size(n_max)
    aim = target_bytes * (1.0 - tolerance / 3)
    bisect = False
    for _ in range(16):
        if hi - lo <= 1 or s_lo >= target_bytes * (1.0 - tolerance):
            break
        if bisect:
            n = (lo + hi) // 2
        else:
            guess = lo + (aim - s_lo) * (hi - lo) / max(s_hi - s_lo, 1)
            n = int(min(max(guess, lo + 1), hi - 1))
        width = hi - lo
        s = size(n)
        if s <= target_bytes:
            lo, s_lo = n, s
        else:
            hi, s_hi = n, s
        bisect = not bisect and 2 * (hi - lo) > width
    return tried[lo]

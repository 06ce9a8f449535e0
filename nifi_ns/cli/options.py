"""Up-front checks of script options shared by the NiFi scripts: a bad value fails before any work starts."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Optional, Sequence


def check_rates(rates: Iterable[float], option: str = "--rates") -> None:
    """Every value a codec rate preset (0.1, 0.5, 1.0), no duplicates."""
    from nifi_ns.codec import rate_preset

    rates = list(rates)
    for rate in rates:
        try:
            rate_preset(rate)
        except ValueError as err:
            raise SystemExit(f"error: {option}: {err}") from None
    if len(set(rates)) != len(rates):
        raise SystemExit(f"error: {option} has duplicates: {rates}")


def check_target_mb(values: Optional[Sequence[float]], count: int, option: str = "--target-mb") -> None:
    """One finite, positive size per rate (or none)."""
    if not values:
        return
    if len(values) != count:
        raise SystemExit(f"error: {option} has {len(values)} values for {count} rates")
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        raise SystemExit(f"error: {option} values must be finite and > 0, got {bad[0]}")


def check_min(option: str, value: Optional[float], minimum: float) -> None:
    """``value >= minimum`` (None = option not given)."""
    if value is not None and not value >= minimum:
        raise SystemExit(f"error: {option} must be >= {minimum}, got {value}")


def check_output(path: Path, overwrite: bool, option: str = "--out") -> None:
    """An output path that is not a directory and, without --overwrite, does not exist yet."""
    if path.is_dir():
        raise SystemExit(f"error: {option} {path} is a directory; give a file path")
    if path.exists() and not overwrite:
        raise SystemExit(f"error: output {path} already exists; pass --overwrite to replace it")

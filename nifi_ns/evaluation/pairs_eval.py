"""Degraded -> restored evaluation on a pairs folder (``scripts/eval_nifi.py``, ``eval_benchmark_nifi.py``).

Every pair gets LPIPS / DISTS / PSNR / SSIM of the degraded render ("before") and of the restoration ("after")
against the dataset photo. LPIPS backbone is recorded with the numbers (NiFi's Table 1 does not state it; splatfacto
uses AlexNet, gsplat / the compression survey VGG — never mix them).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from statistics import mean
from typing import Callable, Optional, Sequence

import torch

from nifi_ns.training.data import PairRecord, load_pair

METRICS = ("lpips", "dists", "psnr", "ssim")


class PairMetrics:
    """LPIPS(net) + DISTS + PSNR + SSIM per image from the shared ``difix_ns.metrics``."""

    def __init__(self, device: str | torch.device = "cpu", lpips_net: str = "alex", require_dists: bool = True,
                 with_dists: bool = True):
        from difix_ns.metrics import DISTS, LPIPS, MetricWeightsError, psnr, ssim

        self.device = torch.device(device)
        self.lpips_net = lpips_net
        self._lpips = LPIPS(lpips_net).to(self.device)
        self.dists_error = None if with_dists else "DISTS not requested"
        try:
            self._dists = DISTS().to(self.device) if with_dists else None
        except MetricWeightsError as err:  # VGG16 weights unobtainable (offline machine without the cache)
            if require_dists:
                raise
            self._dists, self.dists_error = None, str(err)
        self._psnr, self._ssim = psnr, ssim

    @torch.no_grad()
    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        pred = pred.to(self.device, torch.float32).clamp(0, 1)
        target = target.to(self.device, torch.float32).clamp(0, 1)
        return {
            "lpips": float(self._lpips(pred, target).mean()),
            "dists": None if self._dists is None else float(self._dists(pred, target).mean()),
            "psnr": float(self._psnr(pred, target).mean()), "ssim": float(self._ssim(pred, target).mean()),
        }


def evaluate_pairs(
    records: Sequence[PairRecord],
    restore: Callable[[torch.Tensor], torch.Tensor],
    metrics: PairMetrics,
    save_dir: Optional[Path] = None,
    log: Callable[[str], None] = lambda s: None,
) -> list[dict]:
    """One record per pair with ``<metric>_before`` / ``<metric>_after`` and the restoration time."""
    from difix_ns.io import tensor_to_pil

    rows = []
    for i, rec in enumerate(records):
        clean, degraded = load_pair(rec)
        t = time.perf_counter()
        restored = restore(degraded[None])
        if restored.is_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        before, after = metrics(degraded[None], clean[None]), metrics(restored, clean[None])
        row = {"dataset": rec.dataset, "scene": rec.scene, "rate": rec.rate, "split": rec.split, "name": rec.name,
               "clean": str(rec.clean), "degraded": str(rec.degraded),
               "height": int(clean.shape[-2]), "width": int(clean.shape[-1]), "restore_seconds": round(seconds, 4)}
        for m in METRICS:
            row[f"{m}_before"], row[f"{m}_after"] = before[m], after[m]
        if save_dir is not None:
            out = Path(save_dir) / rec.dataset / rec.scene / f"rate_{rec.rate}" / rec.split / f"{rec.name}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            tensor_to_pil(restored[0].cpu()).save(out)
            row["restored"] = str(out)
        rows.append(row)
        log(f"[{i + 1}/{len(records)}] {rec.scene}/rate_{rec.rate}/{rec.name}: "
            f"LPIPS {before['lpips']:.4f} -> {after['lpips']:.4f}, DISTS {before['dists']} -> {after['dists']}")
    return rows


def aggregate(rows: Sequence[dict]) -> dict:
    """Means of every before/after metric, their deltas (after - before) and the count."""
    if not rows:
        return {"count": 0}
    out: dict = {"count": len(rows)}
    for m in METRICS:
        for side in ("before", "after"):
            vals = [r[f"{m}_{side}"] for r in rows
                    if isinstance(r.get(f"{m}_{side}"), (int, float)) and math.isfinite(r[f"{m}_{side}"])]
            out[f"{m}_{side}"] = mean(vals) if vals else None
        b, a = out[f"{m}_before"], out[f"{m}_after"]
        out[f"{m}_delta"] = None if a is None or b is None else a - b
    out["restore_seconds_mean"] = mean(r["restore_seconds"] for r in rows)
    return out


def group_by(rows: Sequence[dict], *keys: str) -> dict:
    """{"a/b": aggregate} grouped by the record fields ``keys`` (joined with '/')."""
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault("/".join(str(r[k]) for k in keys), []).append(r)
    return {k: aggregate(v) for k, v in sorted(groups.items())}

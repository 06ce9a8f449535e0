"""Compress a trained splatfacto model at one rate: prune -> fine-tune -> quantize (nifi_ns.codec).

1. Prune: a first encode of the trained Gaussians finds the budget (Gaussian count and SH degree) at which the
   rate's container fits its target size; the most important Gaussians (opacity x footprint over training
   views) up to that budget are kept.
2. Fine-tune: the survivors re-fit for `finetune_steps` steps (`finetune.py`) against a mix of the training photos
   and the uncompressed model's renders, rendered on the codec's grids for the second half (straight-through).
3. Quantize: the fine-tuned Gaussians are encoded at the same rate; the codec's budget search may drop a few
   more if fine-tuning made them less compressible, so the container still meets the target.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from nifi_ns.io.gaussians import GaussianSplat

logger = logging.getLogger(__name__)


def without_nonfinite(splat: GaussianSplat, what: str) -> Tuple[GaussianSplat, int]:
    """``splat`` without the Gaussians that have a NaN / inf in any attribute (they cannot be rendered or coded;
    an optimiser step can leave a few behind), and how many were dropped, with a warning naming them. The codec
    itself refuses non-finite input; this is the training path's policy, recorded in the report."""
    finite = np.ones(splat.num_gaussians, dtype=bool)
    for name in ("means", "scales", "quats", "opacities", "features_dc", "features_rest"):
        values = getattr(splat, name)
        finite &= np.isfinite(values.reshape(splat.num_gaussians, -1)).all(axis=1)
    dropped = int((~finite).sum())
    if dropped == splat.num_gaussians:
        raise ValueError(f"cannot compress: every one of the {dropped} Gaussians of the {what} has non-finite values")
    if dropped:
        logger.warning("NiFi compression: dropping %d of %d Gaussians of the %s with non-finite values",
                       dropped, splat.num_gaussians, what)
        splat = splat.subset(np.flatnonzero(finite))
    return splat, dropped


def importance_cameras(datamanager, max_views: int):
    """Up to `max_views` training cameras, evenly spread over the training set (nerfstudio `Cameras`)."""
    cameras = datamanager.train_dataset.cameras
    count = int(cameras.shape[0])
    idx = np.unique(np.linspace(0, count - 1, min(max_views, count)).round().astype(np.int64))
    return cameras[torch.from_numpy(idx)]


@dataclass
class CompressionSettings:
    """Knobs of `compress_model` (the pipeline config's fields of the same names)."""

    target_mb: Optional[float] = None  # overrides the rate preset's container size
    finetune_steps: int = 1000
    finetune_lr_scale: float = 1.0
    finetune_ssim_lambda: float = 0.2
    importance_views: int = 32
    finetune_distill_weight: float = 0.5
    finetune_quant_start: Optional[float] = 0.5  # None: no quantisation in the loop

    @classmethod
    def from_pipeline_config(cls, cfg, rate: float) -> "CompressionSettings":
        return cls(_target_for(cfg, rate), cfg.finetune_steps, cfg.finetune_lr_scale, cfg.finetune_ssim_lambda,
                   cfg.importance_views, cfg.finetune_distill_weight, cfg.finetune_quant_start)


def compress_model(
    model, datamanager, rate: float, settings: CompressionSettings, optimizers: Any = None,
    keep: Optional[Dict[str, Any]] = None,
) -> Tuple[bytes, Dict[str, Any]]:
    """Container bytes + JSON-able report for a splatfacto `model` at `rate` (see module docstring).

    keep: if a dict, receives ``"finetuned"``: the fine-tuned Gaussians before quantization (for benchmarks)."""
    from nifi_ns.codec import CameraSet, compress_with_report, importance_order, rate_preset
    from nifi_ns.io.ply import inria_ply_num_bytes
    from nifi_ns.nerfstudio.finetune import current_lrs, finetune_splat

    start = time.perf_counter()
    splat, dropped = without_nonfinite(GaussianSplat.from_gauss_params(model.gauss_params), "trained model")
    cameras = CameraSet.from_nerfstudio(importance_cameras(datamanager, settings.importance_views))
    target_mb = settings.target_mb

    # 1. prune: budget from a trial encode, then keep the top-importance Gaussians at the budget's SH degree.
    # The codec's own ranking (ties broken by opacity), computed once and shared with the trial encode.
    order = importance_order(splat, cameras)
    _, trial = compress_with_report(splat, rate=rate, target_mb=target_mb, cameras=cameras, order=order)
    pruned = splat.subset(np.sort(order[: trial.num_gaussians])).with_sh_degree(trial.sh_degree)

    # 2. fine-tune the survivors (skipped when finetune_steps == 0).
    lrs = {k: v * settings.finetune_lr_scale for k, v in current_lrs(optimizers).items()}
    quant_start = settings.finetune_quant_start
    tuned = finetune_splat(
        model, datamanager, pruned, settings.finetune_steps, lrs, settings.finetune_ssim_lambda,
        distill_weight=settings.finetune_distill_weight,
        quant_config=None if quant_start is None else rate_preset(rate).config,
        quant_start=0.0 if quant_start is None else quant_start,
        description=f"NiFi rate {rate:g}: fine-tune",
    )

    tuned, dropped_after_finetune = without_nonfinite(tuned, "fine-tuned Gaussians")
    if keep is not None:
        keep["finetuned"] = tuned

    # 3. quantize + entropy-code at the same rate.
    container, report = compress_with_report(tuned, rate=rate, target_mb=target_mb, cameras=cameras)
    out = report.to_dict()
    # The ratio's reference is the *trained* model's PLY, not the pruned one the final encode saw.
    out["ply_bytes"] = inria_ply_num_bytes(splat.num_gaussians, splat.sh_degree)
    out["ply_mb"] = out["ply_bytes"] / float(1 << 20)
    out["compression_ratio"] = out["ply_bytes"] / len(container)
    out["num_input_gaussians"] = splat.num_gaussians
    out["input_sh_degree"] = splat.sh_degree
    out.update(
        rate=float(rate),
        pruned_gaussians=int(trial.num_gaussians),
        dropped_nonfinite_gaussians=dropped + dropped_after_finetune,
        finetune_steps=int(settings.finetune_steps),
        total_seconds=time.perf_counter() - start,
        sha256=hashlib.sha256(container).hexdigest(),
    )
    return container, out


def _target_for(cfg, rate: float) -> Optional[float]:
    if not cfg.target_mb:
        return None
    if len(cfg.target_mb) != len(cfg.rates):
        raise ValueError(
            f"--pipeline.target-mb has {len(cfg.target_mb)} values but --pipeline.rates has {len(cfg.rates)}; "
            "give one size per rate (or none to use the presets' targets)"
        )
    return float(cfg.target_mb[list(cfg.rates).index(rate)])


def write_artifacts(out_dir: Path, label: str, container: bytes, report: Dict[str, Any]) -> Path:
    """`<out_dir>/<label>.nifi` + `<label>.json`, written atomically (temp file + rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{label}.nifi"
    if not path.exists() or path.read_bytes() != container:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(container)
        tmp.replace(path)
    (out_dir / f"{label}.json").write_text(json.dumps(report, indent=2), "utf8")
    return path

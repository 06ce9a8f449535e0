"""Compress a trained splatfacto model at one rate: prune -> fine-tune -> quantize (nifi_ns.codec).

1. Prune: a first encode of the trained Gaussians finds the budget (Gaussian count and SH degree) at which the
   rate's container fits its target size; the most important Gaussians (opacity x footprint over training
   views) up to that budget are kept.
2. Fine-tune: the survivors re-fit for `finetune_steps` steps (`finetune.py`) against the training photos
   (optionally mixed with the uncompressed model's renders), rendered on the codec's grids for the second half
   (straight-through).
   With `prune_stages` > 1 the cut is gradual: the first stage keeps `prune_start` x the budget, and before each
   later stage the fine-tuned survivors are ranked again and cut (geometric steps down to the budget), so the
   ranking accounts for what the fine-tune did; the steps are split evenly over the stages, and only the last
   stage renders on the codec's grids.
3. Quantize: the fine-tuned Gaussians are encoded at the same rate; the codec's budget search may drop a few
   more if fine-tuning made them less compressible, so the container still meets the target.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

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
    finetune_distill_weight: float = 0.0  # photos only: measured best (docs/nifi_compression.md)
    finetune_quant_start: Optional[float] = 0.5  # None: no quantisation in the loop
    prune_stages: int = 1  # >1: prune gradually, re-ranking the fine-tuned survivors before each cut
    prune_start: float = 2.0  # first stage keeps this x the final budget (with prune_stages > 1)
    finetune_lpips_weight: float = 0.05  # + w x LPIPS(render, target) in the fine-tune loss (docs/nifi_compression.md)
    finetune_lpips_net: str = "alex"
    # a marker, not a knob: an SH-degree-0 model's sigmoid colours are coded as SH DC (GaussianSplat.from_gauss_params);
    # containers of such models written before that have logits there and are remade when their run resumes
    degree0_colours_as_sh_dc: bool = False

    @classmethod
    def from_pipeline_config(cls, cfg, rate: float) -> "CompressionSettings":
        return cls(_target_for(cfg, rate), cfg.finetune_steps, cfg.finetune_lr_scale, cfg.finetune_ssim_lambda,
                   cfg.importance_views, cfg.finetune_distill_weight, cfg.finetune_quant_start,
                   cfg.prune_stages, cfg.prune_start, cfg.finetune_lpips_weight, cfg.finetune_lpips_net,
                   degree0_colours_as_sh_dc=getattr(getattr(cfg, "model", None), "sh_degree", None) == 0)


# Settings added to CompressionSettings after containers were first written, with the value that reproduces what
# the code did before each existed (a stored report without the field was made so). Add every new field here.
SETTINGS_BEFORE_THEY_EXISTED: Dict[str, Any] = {
    "prune_stages": 1,
    "prune_start": 2.0,
    "finetune_lpips_weight": 0.0,
    "finetune_lpips_net": "alex",
    "degree0_colours_as_sh_dc": False,
}


def stage_budgets(available: int, budget: int, stages: int, start: float) -> List[int]:
    """Gaussian counts kept by each pruning stage: geometric from min(available, start x budget) down to budget.

    >>> stage_budgets(1000, 100, 3, 4.0)
    [400, 200, 100]
    """
    if stages < 1:
        raise ValueError(f"prune_stages={stages} must be >= 1")
    if start < 1.0:
        raise ValueError(f"prune_start={start} must be >= 1")
    first = min(available, int(round(budget * start)))
    if stages == 1 or first <= budget:
        return [budget]
    ratio = (budget / first) ** (1.0 / (stages - 1))
    counts = [int(round(first * ratio**i)) for i in range(stages - 1)] + [budget]
    return [max(c, budget) for c in counts]


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
    steps = settings.finetune_steps
    budgets = stage_budgets(splat.num_gaussians, trial.num_gaussians, settings.prune_stages if steps > 0 else 1,
                            settings.prune_start)
    tuned = splat.subset(np.sort(order[: budgets[0]])).with_sh_degree(trial.sh_degree)

    # 2. fine-tune the survivors (skipped when finetune_steps == 0), cutting between stages.
    settings, lpips_skipped = _with_available_perceptual_term(settings, steps)
    lrs = {k: v * settings.finetune_lr_scale for k, v in current_lrs(optimizers).items()}
    quant_start = settings.finetune_quant_start
    stage_steps = [steps // len(budgets) + (1 if i < steps % len(budgets) else 0) for i in range(len(budgets))]
    for stage, (count, n_steps) in enumerate(zip(budgets, stage_steps)):
        last = stage == len(budgets) - 1
        if stage > 0:  # re-rank what the fine-tune made of the survivors, keep the top `count`
            tuned = tuned.subset(np.sort(importance_order(tuned, cameras)[:count]))
        tuned = finetune_splat(
            model, datamanager, tuned, n_steps, lrs, settings.finetune_ssim_lambda,
            distill_weight=settings.finetune_distill_weight,
            quant_config=None if quant_start is None or not last else rate_preset(rate).config,
            quant_start=0.0 if quant_start is None else quant_start,
            lpips_weight=settings.finetune_lpips_weight, lpips_net=settings.finetune_lpips_net,
            description=f"NiFi rate {rate:g}: fine-tune"
            + (f" (stage {stage + 1}/{len(budgets)}, {count} Gaussians)" if len(budgets) > 1 else ""),
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
    out["settings"] = asdict(settings)  # as run (the perceptual term off if its backbone was missing)
    if lpips_skipped:
        out["finetune_lpips_skipped"] = lpips_skipped
    out.update(
        rate=float(rate),
        pruned_gaussians=int(trial.num_gaussians),
        prune_stage_budgets=budgets,
        dropped_nonfinite_gaussians=dropped + dropped_after_finetune,
        finetune_steps=int(settings.finetune_steps),
        total_seconds=time.perf_counter() - start,
        sha256=hashlib.sha256(container).hexdigest(),
    )
    return container, out


def _with_available_perceptual_term(settings: CompressionSettings, steps: int) -> Tuple[CompressionSettings, str]:
    """`settings`, with the fine-tune's LPIPS term switched off (and why) when its ImageNet backbone cannot be
    loaded: compression at the end of a long training run must not fail on an offline machine for a quality
    refinement. A warning names the missing weights; the report records the settings as run."""
    if settings.finetune_lpips_weight <= 0 or steps <= 0:
        return settings, ""
    from difix_ns.metrics import LPIPS, MetricWeightsError

    try:
        LPIPS(settings.finetune_lpips_net)
    except MetricWeightsError as err:
        why = (f"finetune_lpips_weight={settings.finetune_lpips_weight:g} "
               f"needs the LPIPS-{settings.finetune_lpips_net} "
               f"backbone, which is unavailable ({err}); fine-tuning without the perceptual term. "
               "Run `difix-fetch-metric-weights` to enable it, or set --pipeline.finetune-lpips-weight 0.")
        logger.warning("NiFi compression: %s", why)
        return replace(settings, finetune_lpips_weight=0.0), why
    return settings, ""


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

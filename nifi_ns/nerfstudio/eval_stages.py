"""ns-eval extension point: per-rate "eval stages" scored against the eval photos.

For every rate the pipeline holds a container for, the runner decodes it, swaps the decoded Gaussians into the
model and renders each eval camera. Each configured stage then turns `(pipeline, decoded rate, view images)`
into one image; the runner scores it (PSNR, SSIM, LPIPS-alex, LPIPS-vgg, DISTS via `difix_ns.metrics`) under
``<stage>/rate_<r>/<metric>`` and saves it under ``<render-output-path>/<stage>/rate_<r>/`` when asked.

Built-in stages: ``compressed`` (the render of the decoded model) and ``restored`` (the configured restorer
applied to the compressed render). Another stage is one decorated class:

    @register_eval_stage("my_stage")
    class MyStage(EvalStage):
        def __call__(self, pipeline, rate, view):  # view.images holds the earlier stages' outputs
            return some_fn(view.images["compressed"])  # [1, 3, H, W] in [0, 1]

and ``--pipeline.eval-stages compressed restored my_stage``.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from difix_ns.io import save_png
from difix_ns.progress import step_progress
from nifi_ns.io.gaussians import GaussianSplat


@dataclass
class DecodedRate:
    """One decoded container."""

    label: str  # "rate_0.5"
    rate: float
    splat: GaussianSplat
    report: dict  # the compression report written next to the container


@dataclass
class EvalView:
    """One eval camera: the photo and the images produced so far (each [1, 3, H, W] float in [0, 1])."""

    index: int
    camera: object  # nerfstudio Cameras, one camera
    gt: Tensor
    render: Tensor  # render of the decoded Gaussians
    images: Dict[str, Tensor] = field(default_factory=dict)  # stage name -> output


class EvalStage:
    """Base class: `__call__` returns the stage's image for one view; `enabled` can skip the stage."""

    name: str = ""

    def enabled(self, pipeline) -> bool:
        return True

    def __call__(self, pipeline, rate: DecodedRate, view: EvalView) -> Tensor:
        raise TypeError(f"{type(self).__name__} must implement __call__")


EVAL_STAGES: Dict[str, Callable[[], EvalStage]] = {}


def register_eval_stage(name: str):
    """Class decorator adding a stage to `EVAL_STAGES` under `name` (also its metric prefix)."""

    def wrap(cls):
        cls.name = name
        EVAL_STAGES[name] = cls
        return cls

    return wrap


@register_eval_stage("compressed")
class CompressedStage(EvalStage):
    """The decoded model's render, as is."""

    def __call__(self, pipeline, rate: DecodedRate, view: EvalView) -> Tensor:
        return view.render


@register_eval_stage("restored")
class RestoredStage(EvalStage):
    """The configured restorer (`--pipeline.restorer.*`) applied to the compressed render."""

    def enabled(self, pipeline) -> bool:
        return pipeline.config.restorer.enabled

    def __call__(self, pipeline, rate: DecodedRate, view: EvalView) -> Tensor:
        if pipeline._restorer is None:
            pipeline._restorer = pipeline.config.restorer.setup()
        source = view.images.get("compressed", view.render)
        return pipeline._restorer.restore(source).to(source.device).clamp(0.0, 1.0)


def build_stages(names, pipeline) -> List[EvalStage]:
    unknown = [n for n in names if n not in EVAL_STAGES]
    if unknown:
        raise ValueError(
            f"--pipeline.eval-stages: unknown stage(s) {unknown}; registered: {sorted(EVAL_STAGES)} "
            "(register new ones with nifi_ns.nerfstudio.eval_stages.register_eval_stage)"
        )
    stages = [EVAL_STAGES[n]() for n in names]
    return [s for s in stages if s.enabled(pipeline)]


def _aggregate(values: Dict[str, List[float]], prefix: str, get_std: bool) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for metric, vals in values.items():
        arr = np.asarray(vals, dtype=np.float64)
        out[f"{prefix}/{metric}"] = float(arr.mean())
        if get_std:
            out[f"{prefix}/{metric}_std"] = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return out


def decoded_rates(pipeline) -> List[DecodedRate]:
    """Decode the pipeline's containers in the order of `config.rates`."""
    from nifi_ns.codec import decompress
    from nifi_ns.synthesis.layout import rate_label

    out = []
    for rate in pipeline.config.rates:
        label = rate_label(rate)
        entry = pipeline.compressed[label]
        out.append(DecodedRate(label, float(rate), decompress(entry["container"]), dict(entry["report"])))
    return out


def available_scorer(device) -> Tuple[object, Dict[str, str]]:
    """`ImageMetrics` with every perceptual metric whose backbone weights can be had here, and {metric: why not}
    for the others: PSNR / SSIM need no weights, LPIPS-alex needs AlexNet, LPIPS-vgg and DISTS need VGG16."""
    from difix_ns.metrics import ImageMetrics

    backbone = {"lpips": "alexnet", "lpips_vgg": "vgg16", "dists": "vgg16"}
    probe = ImageMetrics(device)
    usable, missing, failed = [], {}, {}
    for name in ImageMetrics.PERCEPTUAL:
        if backbone.get(name) in failed:  # DISTS needs the VGG16 that LPIPS-vgg could not get: do not fetch twice
            missing[name] = failed[backbone[name]]
            continue
        try:
            probe._net(name)
            usable.append(name)
        except Exception as err:  # MetricWeightsError offline, or a broken cache file
            missing[name] = f"{type(err).__name__}: {err}"
            failed[backbone.get(name, name)] = missing[name]
    scorer = ImageMetrics(device, perceptual=tuple(usable))
    scorer._nets = {k: v for k, v in probe._nets.items() if k in usable}
    return scorer, missing


@torch.no_grad()
def run_eval_stages(
    pipeline, output_path: Optional[Path] = None, get_std: bool = False, name_missing: bool = True
) -> Dict[str, object]:
    """All per-rate fields for ns-eval (see docs/nifi_compression.md for the schema).

    Metrics whose backbone weights are unavailable (e.g. LPIPS-vgg / DISTS offline) are left out and, with
    `name_missing`, named under ``missing_metrics`` (metric -> reason) instead of failing the evaluation."""
    from nifi_ns.nerfstudio.gaussian_swap import decoded_gaussians

    model = pipeline.model
    stages = build_stages(pipeline.config.eval_stages, pipeline)
    scorer, missing = available_scorer(model.device)
    if missing:
        from nerfstudio.utils.rich_utils import CONSOLE

        CONSOLE.print(
            f"[yellow]NiFi ns-eval: no backbone weights for {', '.join(sorted(missing))}; reporting "
            f"PSNR/SSIM{'/' + '/'.join(scorer.perceptual) if scorer.perceptual else ''} only "
            "(`difix-fetch-metric-weights` caches the rest)"
        )
    views = list(pipeline.datamanager.fixed_indices_eval_dataloader)
    if not views:
        raise ValueError("ns-eval: the eval split is empty; NiFi stages need eval images")
    was_training = model.training
    model.eval()
    results: Dict[str, float] = {}
    try:
        # Same metric code for the uncompressed model, so compressed/restored numbers compare like for like.
        uncompressed: Dict[str, List[float]] = defaultdict(list)
        with step_progress("ns-eval NiFi: uncompressed views", len(views)) as bar:
            for camera, batch in views:
                pred, gt = _render_pair(model, camera, batch)
                for k, v in scorer(pred, gt).items():
                    uncompressed[k].append(float(v))
                bar.advance()
        results.update(_aggregate(uncompressed, "uncompressed", get_std))

        for rate in decoded_rates(pipeline):
            report = rate.report
            results[f"compressed/{rate.label}/size_mb"] = float(report["size_mb"])
            results[f"compressed/{rate.label}/num_gaussians"] = float(report["num_gaussians"])
            results[f"compressed/{rate.label}/compression_ratio"] = float(report["compression_ratio"])
            scores: Dict[str, Dict[str, List[float]]] = {s.name: defaultdict(list) for s in stages}
            what = f"ns-eval NiFi {rate.label}: {' + '.join(s.name for s in stages) or 'sizes'}"
            with decoded_gaussians(model, rate.splat), step_progress(what, len(views)) as bar:
                for index, (camera, batch) in enumerate(views):
                    render, gt = _render_pair(model, camera, batch)
                    view = EvalView(index, camera, gt, render)
                    for stage in stages:
                        image = stage(pipeline, rate, view)
                        if image.shape != gt.shape:
                            raise ValueError(
                                f"eval stage {stage.name!r} returned {tuple(image.shape)}, expected {tuple(gt.shape)}"
                            )
                        view.images[stage.name] = image
                        for k, v in scorer(image, gt).items():
                            scores[stage.name][k].append(float(v))
                        if output_path is not None:
                            save_png(image, Path(output_path) / stage.name / rate.label / f"eval_{index:04d}.png")
                    bar.advance()
            for name, values in scores.items():
                results.update(_aggregate(values, f"{name}/{rate.label}", get_std))
    finally:
        model.train(was_training)
    if missing and name_missing:
        results["missing_metrics"] = dict(sorted(missing.items()))
    return results


def _render_pair(model, camera, batch):
    """Render one eval camera -> (pred, gt), both [1, 3, H, W] float in [0, 1], as splatfacto scores them."""
    from nifi_ns.nerfstudio.gaussian_swap import render_view

    pred, gt = render_view(model, camera, batch["image"])
    return pred.permute(2, 0, 1)[None].clamp(0, 1), gt.permute(2, 0, 1)[None].to(pred.device)

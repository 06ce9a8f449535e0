"""Compression-aware fine-tune: splatfacto-loss steps on the pruned Gaussians before they are quantized.

Pruning to an extreme budget removes most primitives; letting the survivors re-fit for a few hundred steps
recovers much of the lost quality (LightGaussian / RAVE do the same). No densification: the count is the budget.
Two optional terms make it compression-aware:

* distillation (`distill_weight` > 0): the target mixes the training photo with the *uncompressed* model's render
  of the same view (cached once per view), so the survivors imitate what the full model shows, floaters and
  view-dependent effects included, instead of re-fitting noisy photos from a depleted set;
* quantisation in the loop (`quant_config`, from step `quant_start` on): every step renders the Gaussians on the
  codec's grids (`fake_quant.py`) and applies the gradient to the unquantised values (straight-through);
* a perceptual term (`lpips_weight` > 0): + w x LPIPS(render, target) with the ImageNet AlexNet or VGG16 backbone
  (`difix_ns.metrics.LPIPS`), aimed at what a pruned model loses first: fine texture, which L1 + SSIM barely weigh.
 Runs on a copy swapped into the model (see `gaussian_swap`), in eval mode so the camera
optimizer, random backgrounds and the densification strategy are left alone.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from difix_ns.progress import step_progress
from nifi_ns.nerfstudio.fake_quant import fake_quantize
from nifi_ns.io.gaussians import GAUSS_PARAM_KEYS, GaussianSplat, num_sh_rest
from nifi_ns.nerfstudio.gaussian_swap import model_sh_degree, params_to_splat, splat_to_params, swapped_gaussians

# splatfacto's learning rates at the end of its schedule (method_configs: means decays 1.6e-4 -> 1.6e-6).
END_OF_SCHEDULE_LRS = {
    "means": 1.6e-6,
    "scales": 0.005,
    "quats": 0.001,
    "features_dc": 0.0025,
    "features_rest": 0.0025 / 20,
    "opacities": 0.05,
}


MIN_LPIPS_SIDE = 32  # AlexNet's pooling needs about this many pixels a side; the term skips smaller training images


def current_lrs(optimizers: Any = None) -> Dict[str, float]:
    """Per-group learning rates of nerfstudio `Optimizers` (the trainer's current ones), else the defaults."""
    lrs = dict(END_OF_SCHEDULE_LRS)
    groups = getattr(optimizers, "optimizers", None) or {}
    for name in GAUSS_PARAM_KEYS:
        if name in groups:
            lrs[name] = float(groups[name].param_groups[0]["lr"])
    return lrs


def finetune_splat(
    model,
    datamanager,
    splat: GaussianSplat,
    steps: int,
    lrs: Optional[Dict[str, float]] = None,
    ssim_lambda: float = 0.2,
    distill_weight: float = 0.0,
    quant_config: Any = None,
    quant_start: float = 0.5,
    description: str = "NiFi fine-tune",
    lpips_weight: float = 0.0,
    lpips_net: str = "alex",
) -> GaussianSplat:
    """Optimise `splat` for `steps` training views with (1-λ)·L1 + λ·(1-SSIM) [+ lpips_weight·LPIPS] against
    (1 - distill_weight)·photo + distill_weight·uncompressed render; returns a new splat.

    quant_config: a `CodecConfig`; from `quant_start` x steps on, renders use its grids (straight-through).
    Progress (`description`, step n/N, ETA) is shown in the terminal and published as a status line.
    """
    if steps <= 0:
        return splat
    if not 0.0 <= distill_weight <= 1.0:
        raise ValueError(f"distill_weight={distill_weight} must be in [0, 1]")
    if lpips_weight < 0:
        raise ValueError(f"lpips_weight={lpips_weight} must be >= 0")
    perceptual = _perceptual_loss(lpips_net, model.device) if lpips_weight > 0 else None
    lrs = lrs or dict(END_OF_SCHEDULE_LRS)
    degree = model_sh_degree(model)
    params = splat_to_params(splat, degree, model.device)
    kept_rest = num_sh_rest(splat.sh_degree)  # bands above this were dropped by the codec: keep them at zero
    teacher_params = model.gauss_params
    teacher_cache: Dict[int, torch.Tensor] = {}
    quant_from = int(round(quant_start * steps)) if quant_config is not None else steps + 1
    raw = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), swapped_gaussians(model, params, requires_grad=True) as gp, \
                step_progress(description, steps) as bar:
            optimizer = torch.optim.Adam([{"params": [raw[k]], "lr": lrs[k]} for k in GAUSS_PARAM_KEYS], eps=1e-15)
            for step in range(steps):
                camera, batch = datamanager.next_train(0)
                with torch.no_grad():  # the values rendered this step: raw, or raw on the codec's grids
                    shown = fake_quantize(raw, quant_config) if step >= quant_from else raw
                    for k in GAUSS_PARAM_KEYS:
                        gp[k].copy_(shown[k])
                outputs = model.get_outputs(camera)
                pred = outputs["rgb"]  # [H, W, 3]
                gt = model.composite_with_background(model.get_gt_img(batch["image"]), outputs["background"])
                if distill_weight > 0:
                    teacher = _teacher_render(model, teacher_params, gp, camera, teacher_cache)
                    gt = (1.0 - distill_weight) * gt + distill_weight * teacher
                l1 = (pred - gt).abs().mean()
                ssim = model.ssim(gt.permute(2, 0, 1)[None], pred.permute(2, 0, 1)[None])
                loss = (1.0 - ssim_lambda) * l1 + ssim_lambda * (1.0 - ssim)
                if perceptual is not None and min(pred.shape[:2]) >= MIN_LPIPS_SIDE:  # smaller: AlexNet cannot pool it
                    loss = loss + lpips_weight * perceptual(pred.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None])[0]
                for k in GAUSS_PARAM_KEYS:
                    gp[k].grad = None
                loss.backward()
                for k in GAUSS_PARAM_KEYS:  # straight-through: the gradient at the shown values moves the raw ones
                    raw[k].grad = None if gp[k].grad is None else gp[k].grad.detach().clone()
                if raw["features_rest"].grad is not None:
                    raw["features_rest"].grad[:, kept_rest:] = 0.0
                optimizer.step()
                bar.advance()
            tuned = {k: raw[k].detach().clone() for k in GAUSS_PARAM_KEYS}
    finally:
        model.train(was_training)
    return params_to_splat(tuned, splat.sh_degree)


def _perceptual_loss(net: str, device) -> torch.nn.Module:
    """LPIPS(`net`) on `device` for the fine-tune's perceptual term; a clear error if its backbone is missing."""
    from difix_ns.metrics import LPIPS, MetricWeightsError

    if net not in ("alex", "vgg"):
        raise ValueError(f"finetune_lpips_net={net!r} must be 'alex' or 'vgg'")
    try:
        return LPIPS(net).to(device)
    except MetricWeightsError as err:
        raise MetricWeightsError(f"--pipeline.finetune-lpips-weight > 0 needs the LPIPS-{net} backbone: {err}") from err


def _teacher_render(model, teacher_params, student_params, camera, cache: Dict[int, torch.Tensor]) -> torch.Tensor:
    """The uncompressed model's render of `camera` (cached per training view; rendered with the original
    Gaussians swapped back in for a moment)."""
    key = int((camera.metadata or {}).get("cam_idx", -1))
    if key >= 0 and key in cache:
        return cache[key].float()
    model.gauss_params = teacher_params
    try:
        with torch.no_grad():
            render = model.get_outputs(camera)["rgb"].detach().clamp(0, 1)
    finally:
        model.gauss_params = student_params
    if key >= 0:
        cache[key] = render.half()
    return render

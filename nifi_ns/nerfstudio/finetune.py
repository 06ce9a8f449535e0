"""Compression-aware fine-tune: a few splatfacto-loss steps on the pruned Gaussians before they are quantized.

Pruning to an extreme budget removes most primitives; letting the survivors re-fit the training photos for a
few hundred steps recovers much of the lost quality (LightGaussian / RAVE do the same). No densification: the
count is the budget. Runs on a copy swapped into the model (see `gaussian_swap`), in eval mode so the camera
optimizer, random backgrounds and the densification strategy are left alone.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from difix_ns.progress import step_progress
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
    description: str = "NiFi fine-tune",
) -> GaussianSplat:
    """Optimise `splat` for `steps` training views with (1-λ)·L1 + λ·(1-SSIM); returns a new splat.

    Progress (`description`, step n/N, ETA) is shown in the terminal and published as a status line."""
    if steps <= 0:
        return splat
    lrs = lrs or dict(END_OF_SCHEDULE_LRS)
    degree = model_sh_degree(model)
    params = splat_to_params(splat, degree, model.device)
    kept_rest = num_sh_rest(splat.sh_degree)  # bands above this were dropped by the codec: keep them at zero
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), swapped_gaussians(model, params, requires_grad=True) as gp, \
                step_progress(description, steps) as bar:
            optimizer = torch.optim.Adam([{"params": [gp[k]], "lr": lrs[k]} for k in GAUSS_PARAM_KEYS], eps=1e-15)
            for _ in range(steps):
                camera, batch = datamanager.next_train(0)
                outputs = model.get_outputs(camera)
                pred = outputs["rgb"]  # [H, W, 3]
                gt = model.composite_with_background(model.get_gt_img(batch["image"]), outputs["background"])
                l1 = (pred - gt).abs().mean()
                ssim = model.ssim(gt.permute(2, 0, 1)[None], pred.permute(2, 0, 1)[None])
                loss = (1.0 - ssim_lambda) * l1 + ssim_lambda * (1.0 - ssim)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if gp["features_rest"].grad is not None:
                    gp["features_rest"].grad[:, kept_rest:] = 0.0
                optimizer.step()
                bar.advance()
            tuned = {k: gp[k].detach().clone() for k in GAUSS_PARAM_KEYS}
    finally:
        model.train(was_training)
    return params_to_splat(tuned, splat.sh_degree)

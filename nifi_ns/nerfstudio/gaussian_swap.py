"""Render / optimise other Gaussians through a trained splatfacto model without touching its own parameters.

Swapping `model.gauss_params` reuses splatfacto's exact render path (camera model, background, crop box, SH
schedule, CPU support), so compressed renders differ from the uncompressed ones only by the Gaussians.

- `swapped_gaussians`: install given parameters for a `with` block (the compression-aware fine-tune optimises them);
- `decoded_gaussians`: decode a container (or take a decoded splat) and swap it in: "decode -> swap";
- `render_view`: one camera's render and its photo on the same background: "-> render", as splatfacto scores it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator, Tuple, Union

import torch
from torch import Tensor

from nifi_ns.io.gaussians import GAUSS_PARAM_KEYS, GaussianSplat, logits_from_sh_dc, num_sh_rest


def model_sh_degree(model) -> int:
    """SH degree the model renders with (splatfacto's `features_rest` is [N, (d+1)^2-1, 3])."""
    return int(model.config.sh_degree)


def splat_to_params(splat: GaussianSplat, sh_degree: int, device) -> Dict[str, Tensor]:
    """Splatfacto-shaped tensors for a model of SH degree `sh_degree`; SH bands the codec dropped are zero-padded up
    to it. A degree-0 model renders ``sigmoid(features_dc)``, so its colours are stored as those logits."""
    params = splat.to_gauss_params(device)
    rest = params["features_rest"]  # [N, K, 3]
    k_model = num_sh_rest(sh_degree)
    if rest.shape[1] < k_model:
        pad = rest.new_zeros(rest.shape[0], k_model - rest.shape[1], 3)
        params["features_rest"] = torch.cat([rest, pad], dim=1)
    elif rest.shape[1] > k_model:
        raise ValueError(f"splat has SH degree {splat.sh_degree} > the model's {sh_degree}")
    if k_model == 0:
        params["features_dc"] = logits_from_sh_dc(params["features_dc"])
    return params


def params_to_splat(params: Dict[str, Tensor], sh_degree: int) -> GaussianSplat:
    """Inverse of `splat_to_params`: keeps only the first (sh_degree+1)^2-1 rest bands (and turns a degree-0
    model's colour logits back into SH DC, as `GaussianSplat.from_gauss_params` does)."""
    splat = GaussianSplat.from_gauss_params({k: params[k].detach() for k in GAUSS_PARAM_KEYS})
    return splat.with_sh_degree(sh_degree) if splat.sh_degree > sh_degree else splat


@contextmanager
def swapped_gaussians(
    model, params: Dict[str, Tensor], requires_grad: bool = False
) -> Iterator[torch.nn.ParameterDict]:
    """Temporarily install `params` as `model.gauss_params`; the original ParameterDict is put back on exit."""
    original = model.gauss_params
    device = original["means"].device
    swapped = torch.nn.ParameterDict(
        {k: torch.nn.Parameter(params[k].to(device), requires_grad=requires_grad) for k in GAUSS_PARAM_KEYS}
    )
    model.gauss_params = swapped
    try:
        yield swapped
    finally:
        model.gauss_params = original


@contextmanager
def decoded_gaussians(model, container: Union[bytes, GaussianSplat]) -> Iterator[torch.nn.ParameterDict]:
    """Swap in a compressed splat's Gaussians for the ``with`` block: ``container`` is a Nix container (decoded
    here) or an already decoded ``GaussianSplat``; SH bands the codec dropped are zero-padded to the model's degree."""
    if isinstance(container, (bytes, bytearray, memoryview)):
        from nifi_ns.codec import decompress

        container = decompress(bytes(container))
    params = splat_to_params(container, model_sh_degree(model), model.device)
    with swapped_gaussians(model, params) as swapped:
        yield swapped


def render_view(model, camera, photo: Tensor) -> Tuple[Tensor, Tensor]:
    """(render, photo composited on the render's background) for one camera, both [H, W, 3] float, as splatfacto's
    own evaluation pairs them (``photo``: the dataset image, uint8 or float [H, W, C])."""
    outputs = model.get_outputs_for_camera(camera)
    gt = model.composite_with_background(model.get_gt_img(photo), outputs["background"])
    return outputs["rgb"], gt

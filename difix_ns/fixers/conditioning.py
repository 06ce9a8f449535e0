"""The UNet's conditioning as constants of the fast path's compiled graphs (``CompiledDifixStep(constants=...)``).

A Difix step always runs the UNet at the same timestep (199) with the same prompt, so everything the UNet computes
from those two alone is the same at every frame: the time embedding (a sinusoid, two linear layers) and each
resnet's projection of it (22 small matrix products in SD-Turbo's UNet), and the keys and values every
cross-attention layer computes from the prompt embedding (32 more). Passed in as graph inputs, as
``unet(sample, t, encoder_hidden_states=emb)`` does, they are recomputed at every call: about 60 kernels, each too
small to fill the GPU. :class:`ConditionedUNet` (``forward(sample) -> eps``, one per number of rows) removes them
in one of two ways:

* ``"folded"``: the module outputs that depend on the conditioning alone -- each resnet's ``time_emb_proj`` and each
  cross-attention layer's ``to_k`` / ``to_v`` -- are recorded once, from one eager call of the UNet, and the
  wrapped UNet returns them as buffers (:class:`ConstantOutput`); what fed them is then dead code that inductor
  drops. The graphs still take the buffers as inputs, so inductor's on-disk caches work as before.
* ``"frozen"``: inductor's freezing (``with_freezing`` in ``compiled``): parameters and buffers become constants and
  inductor folds whatever depends on constants alone at compile time, weight-only work included (the upsamplers'
  transposed kernels). The prompt embedding and the timesteps are buffers of the wrapper; and because inductor's
  constant folding never folds tensor constructors (the sinusoid starts from ``torch.arange``), the wrapped UNet's
  ``time_proj`` returns the sinusoid the real one computed once. Freezing bypasses inductor's AOT-autograd cache:
  every process compiles its shapes longer (docs/difix_fast_path.md, "Constant conditioning").

Either way the wrapped UNet is a copy-on-write view of the caller's (:func:`with_submodules`): the modules on the
path to a replaced one are shallow copies, every other module and every weight is shared, and the caller's UNet is
not modified (its eager calls are unchanged). The constants are taken when the wrapper is built: weights edited in
place afterwards do not reach them (build a new ``DifixFixer`` after editing them).
"""
from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

CONSTANTS_KINDS = ("inputs", "folded", "frozen")
"""How the fast path's UNet gets its conditioning: as graph inputs recomputed at every call (``inputs``), as module
outputs recorded once (``folded``), or folded by inductor's freezing (``frozen``)."""


class ConstantOutput(nn.Module):
    """Stands in for a module whose output no longer changes: returns ``value`` (a buffer) whatever it is given."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.register_buffer("value", value, persistent=False)

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.value


def with_submodules(root: nn.Module, replacements: dict[str, nn.Module]) -> nn.Module:
    """A copy of ``root`` in which each dotted name of ``replacements`` is the given module: every module on the way
    to a replaced one is a shallow copy with a module dict of its own, every other module (and so every weight) is
    the same object as in ``root``, and ``root`` itself is not modified."""
    copies: dict[str, nn.Module] = {}

    def copied(name: str) -> nn.Module:
        if name not in copies:
            original = root.get_submodule(name) if name else root
            clone = copy.copy(original)
            clone._modules = dict(original._modules)
            copies[name] = clone
            if name:
                parent, _, child = name.rpartition(".")
                copied(parent)._modules[child] = clone
        return copies[name]

    for name, module in replacements.items():
        if not name:
            raise ValueError("the root itself cannot be replaced")
        root.get_submodule(name)  # names a module that exists
        parent, _, child = name.rpartition(".")
        copied(parent)._modules[child] = module
    return copied("")


def conditioning_outputs(unet: nn.Module, prompt_embeds: torch.Tensor,
                         timesteps: torch.Tensor) -> dict[str, torch.Tensor]:
    """What each resnet's ``time_emb_proj`` and each cross-attention layer's ``to_k`` / ``to_v`` return for this
    conditioning (by module name), recorded from one eager call of ``unet`` on a small latent (none of them depends
    on the sample)."""
    from diffusers.models.attention_processor import Attention

    names = [f"{name}.time_emb_proj" for name, m in unet.named_modules()
             if isinstance(getattr(m, "time_emb_proj", None), nn.Module)]
    names += [f"{name}.{part}" for name, m in unet.named_modules()
              if isinstance(m, Attention) and m.is_cross_attention for part in ("to_k", "to_v")]
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, args, output):
            outputs[name] = output.detach().clone()
        return hook

    handles = [unet.get_submodule(name).register_forward_hook(keep(name)) for name in names]
    weight = next(unet.parameters())
    sample = torch.zeros(timesteps.shape[0], unet.config.in_channels, 8, 8, device=weight.device, dtype=weight.dtype)
    try:
        with torch.no_grad():
            unet(sample, timesteps, encoder_hidden_states=prompt_embeds, return_dict=False)
    finally:
        for handle in handles:
            handle.remove()
    missing = sorted(set(names) - set(outputs))
    if missing:
        raise RuntimeError(f"the UNet did not call {', '.join(missing)}: its conditioning cannot be folded")
    return outputs


class ConditionedUNet(nn.Module):
    """``unet(sample, timesteps, encoder_hidden_states=prompt_embeds)`` with the conditioning held as constants
    (see the module docstring): ``forward(sample) -> eps``.

    ``prompt_embeds`` [N, L, C] and ``timesteps`` [N] fix the batch N (a UNet call's rows: frames x views)."""

    def __init__(self, unet: nn.Module, prompt_embeds: torch.Tensor, timesteps: torch.Tensor,
                 kind: Literal["folded", "frozen"] = "folded"):
        super().__init__()
        if prompt_embeds.shape[0] != timesteps.shape[0]:
            raise ValueError(f"prompt_embeds has {prompt_embeds.shape[0]} rows, timesteps {timesteps.shape[0]}")
        if kind == "folded":
            outputs = conditioning_outputs(unet, prompt_embeds, timesteps)
            replacements = {name: ConstantOutput(value) for name, value in outputs.items()}
        elif kind == "frozen":
            with torch.no_grad():
                replacements = {"time_proj": ConstantOutput(unet.time_proj(timesteps))}
        else:
            raise ValueError(f"kind must be folded or frozen, got {kind!r}")
        self.kind = kind
        self.unet = with_submodules(unet, replacements)
        self.register_buffer("prompt_embeds", prompt_embeds, persistent=False)
        self.register_buffer("timesteps", timesteps, persistent=False)

    @property
    def rows(self) -> int:
        return int(self.timesteps.shape[0])

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        if sample.shape[0] != self.rows:
            raise ValueError(f"this conditioned UNet runs {self.rows} rows, got a sample of shape "
                             f"{tuple(sample.shape)}")
        return self.unet(sample, self.timesteps, encoder_hidden_states=self.prompt_embeds, return_dict=False)[0]

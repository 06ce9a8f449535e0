"""The UNet's conditioning as constants of the fast path's compiled graphs (``CompiledDifixStep(freeze=True)``).

A Difix step always runs the UNet at the same timestep (199) with the same prompt, so everything the UNet computes
from those two alone is the same at every frame: the time embedding (a sinusoid, two linear layers) and each
resnet's projection of it (22 small matrix products in SD-Turbo's UNet), and the keys and values every
cross-attention layer computes from the prompt embedding (32 more). Passed in as graph inputs, as
``unet(sample, t, encoder_hidden_states=emb)`` does, they are recomputed at every call: about 60 kernels, each too
small to fill the GPU.

:class:`ConditionedUNet` holds the prompt embedding and the timesteps as buffers. Compiled with inductor's freezing
(``torch.compile(options={"freezing": True})``, in inference mode), parameters and buffers become constants and
inductor folds whatever depends on constants alone at compile time. One obstacle remains: the sinusoid is built from
``torch.arange``, and inductor's constant folding never folds tensor constructors, so nothing downstream of it
would fold. The wrapper's UNet is therefore a shallow copy of the caller's whose ``time_proj`` returns the sinusoid
the real one computed once (:class:`ConstantTimeProjection`); every other submodule, and so every weight, is shared
with the caller's UNet, which is left untouched (its eager calls are unchanged).

Freezing ties a compiled graph to the weights' values at compile time: edits to the weights afterwards do not reach
it (build a new ``DifixFixer`` after editing them).
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class ConstantTimeProjection(nn.Module):
    """Stands in for a UNet's ``time_proj`` (``diffusers.models.embeddings.Timesteps``) at one fixed set of timesteps:
    returns the float32 sinusoid ``embedding`` [N, C] that the real projection computed for them."""

    def __init__(self, embedding: torch.Tensor):
        super().__init__()
        self.register_buffer("embedding", embedding, persistent=False)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        if tuple(timesteps.shape) != tuple(self.embedding.shape[:1]):
            raise ValueError(f"this time projection holds {self.embedding.shape[0]} timesteps, "
                             f"got shape {tuple(timesteps.shape)}")
        return self.embedding


def unet_with_constant_time_projection(unet: nn.Module, timesteps: torch.Tensor) -> nn.Module:
    """A shallow copy of ``unet`` (sharing every submodule and weight) whose ``time_proj`` returns, as a buffer,
    what ``unet.time_proj(timesteps)`` returns now; ``unet`` itself is not modified."""
    with torch.no_grad():
        embedding = unet.time_proj(timesteps)
    clone = copy.copy(unet)
    clone._modules = dict(unet._modules)  # a module dict of its own; the submodules are the same objects
    clone._modules["time_proj"] = ConstantTimeProjection(embedding)
    return clone


class ConditionedUNet(nn.Module):
    """``unet(sample, timesteps, encoder_hidden_states=prompt_embeds)`` with the conditioning held as buffers
    (see the module docstring): ``forward(sample) -> eps``.

    ``prompt_embeds`` [N, L, C] and ``timesteps`` [N] fix the batch N (a UNet call's rows: frames x views)."""

    def __init__(self, unet: nn.Module, prompt_embeds: torch.Tensor, timesteps: torch.Tensor):
        super().__init__()
        if prompt_embeds.shape[0] != timesteps.shape[0]:
            raise ValueError(f"prompt_embeds has {prompt_embeds.shape[0]} rows, timesteps {timesteps.shape[0]}")
        self.unet = unet_with_constant_time_projection(unet, timesteps)
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

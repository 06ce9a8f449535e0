"""``DifixFixer``: the batched tensor API the 3D methods and render tools call.

Import-light: this module imports torch only; diffusers/transformers/peft are imported when the model is first
used (``fixer.pipeline``, ``fixer.fix`` or ``fixer.uses_references``), so nerfstudio method configs can hold a
``DifixFixerConfig`` without paying for the diffusion stack.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Literal, Optional

import torch

from difix_ns.diffusion.images import check_min_size, floor_to_multiple, resize_tensor

if TYPE_CHECKING:
    from difix_ns.pipeline_difix import DifixPipeline

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class DifixFixerConfig:
    """How to load and run the Difix fixer."""

    model_name: str = "nvidia/difix_ref"
    """Hugging Face hub id, local directory in the HF layout (e.g. from difix-make-tiny-model), or random-tiny
    (tiny random weights built on the fly: plumbing only)."""
    device: Optional[str] = None
    """Torch device; None picks "cuda" when available, else "cpu"."""
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    """Weights/compute dtype on CUDA. CPU always runs float32."""
    batch_size: int = 4
    """Images per forward pass (each carries its V reference views)."""
    timestep: int = 199
    """Diffusion timestep of the single denoising step (Difix was trained at 199)."""
    prompt: str = "remove degradation"
    """Text prompt (Difix was trained with this fixed prompt)."""


class DifixFixer:
    """Restore renders [B,3,H,W] in [0,1], optionally conditioned on references [B,V,3,H,W]."""

    def __init__(self, config: Optional[DifixFixerConfig] = None, **overrides):
        config = config or DifixFixerConfig()
        names = {f.name for f in fields(DifixFixerConfig)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown DifixFixer option(s): {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        self.config = replace(config, **overrides)
        if self.config.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.config.dtype!r}")
        if self.config.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.config.batch_size}")
        if not 0 <= self.config.timestep < 1000:
            raise ValueError(f"timestep must be in [0, 1000), got {self.config.timestep}")
        self.device = torch.device(self.config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = _DTYPES[self.config.dtype] if self.device.type == "cuda" else torch.float32
        self._pipeline: Optional["DifixPipeline"] = None
        self._warned_refs = False
        self.plumbing_only = False
        """True once a ``random-tiny`` model is loaded: outputs prove plumbing, not quality."""

    @classmethod
    def from_pipeline(cls, pipeline: "DifixPipeline", config: Optional[DifixFixerConfig] = None, **overrides):
        """Wrap an already built pipeline (e.g. ``difix_ns.testing.build_difix_pipeline``); it is moved to the
        fixer's device and dtype."""
        fixer = cls(config, **overrides)
        fixer._pipeline = fixer._prepare(pipeline.to(device=fixer.device, dtype=fixer.dtype))
        return fixer

    @property
    def pipeline(self) -> "DifixPipeline":
        """The loaded ``DifixPipeline`` (loaded on first access)."""
        if self._pipeline is None:
            self._pipeline = self._load()
        return self._pipeline

    def _load(self) -> "DifixPipeline":
        from difix_ns.pipeline_difix import DifixPipeline

        from difix_ns.diffusion.hub import ModelResolutionError
        from difix_ns.diffusion.model_names import (
            is_random_tiny,
            model_error_message,
            plumbing_banner,
            resolve_difix_model,
        )

        name, self.plumbing_only = resolve_difix_model(self.config.model_name, option="model")
        logger.info("loading Difix model %s on %s (%s)", self.config.model_name, self.device, self.dtype)
        try:
            pipe = DifixPipeline.from_pretrained(name, torch_dtype=self.dtype).to(self.device)
        except ModelResolutionError as err:
            raise ModelResolutionError(model_error_message(self.config.model_name, err, option=None)) from None
        if self.plumbing_only and not is_random_tiny(self.config.model_name):  # random-tiny announced itself
            plumbing_banner(f"model {self.config.model_name}")
        return self._prepare(pipe)

    def _prepare(self, pipe: "DifixPipeline") -> "DifixPipeline":
        # GPU fast path: fold the decoder LoRA into its base weights (differences ~1e-5). CPU keeps the exact
        # unmerged computation so CPU results match DifixPipeline bit for bit.
        if self.device.type == "cuda":
            pipe.vae.merge_lora()
        return pipe

    @property
    def uses_references(self) -> bool:
        """True for reference-mixing checkpoints (nvidia/difix_ref layout)."""
        return self.pipeline.reference_mixing

    @torch.no_grad()
    def fix(self, images: torch.Tensor, refs: Optional[torch.Tensor] = None, cameras=None) -> torch.Tensor:
        """images [B,3,H,W] in [0,1] (H, W >= 64); refs [B,V,3,H',W'] or None -> [B,3,H,W] float32 in [0,1].

        Implements ``difix_ns.fixers.ImageFixer``; ``cameras`` is accepted for the contract and not used.

        Sizes are floored to a multiple of 8 for the model and resized back (antialiased bilinear); references are
        resized to the render's floored size. Runs in chunks of ``batch_size``.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B,3,H,W], got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        check_min_size(height, width, what="input image")
        if refs is not None:
            if refs.ndim != 5 or refs.shape[2] != 3:
                raise ValueError(f"refs must be [B,V,3,H,W], got shape {tuple(refs.shape)}")
            if refs.shape[0] != images.shape[0]:
                raise ValueError(f"got {images.shape[0]} images but references for {refs.shape[0]}; counts must match")
            if refs.shape[1] == 0:
                refs = None
        pipe = self.pipeline
        if refs is not None and not pipe.reference_mixing:
            if not self._warned_refs:
                name = self.config.model_name
                logger.warning("Difix model %s has no reference mixing; references are ignored.", name)
                self._warned_refs = True
            refs = None
        size8 = floor_to_multiple(height, width)
        outputs = []
        for start in range(0, images.shape[0], self.config.batch_size):
            chunk = images[start : start + self.config.batch_size].to(self.device, torch.float32)
            x = resize_tensor(chunk, size8) * 2 - 1
            r = None
            if refs is not None:
                r = refs[start : start + self.config.batch_size].to(self.device, torch.float32)
                r = resize_tensor(r, size8) * 2 - 1
            y = pipe.restore(x, r, prompt=self.config.prompt, timestep=self.config.timestep)
            y = resize_tensor((y.float() + 1) / 2, (height, width)).clamp(0, 1)
            outputs.append(y.to(images.device))
        return torch.cat(outputs)

    def __call__(self, images: torch.Tensor, refs: Optional[torch.Tensor] = None, cameras=None) -> torch.Tensor:
        return self.fix(images, refs, cameras)

"""``DifixFixer``: the batched tensor API the 3D methods and render tools call.

Import-light: this module imports torch only; diffusers/transformers/peft are imported when the model is first
used (``fixer.pipeline``, ``fixer.fix`` or ``fixer.uses_references``), so nerfstudio method configs can hold a
``DifixFixerConfig`` without paying for the diffusion stack.

A model folder (or hub id) in NVIDIA Fixer's layout loads ``difix_ns.fixers.cosmos_fixer.CosmosFixerPipeline``
instead of a ``DifixPipeline``; both expose ``restore`` and ``reference_mixing``.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Iterator, Literal, Optional

import torch

from difix_ns.diffusion.device import check_dtype_name, resolve_device, resolve_dtype
from difix_ns.diffusion.images import check_min_size, floor_to_multiple, resize_tensor

if TYPE_CHECKING:
    from pathlib import Path

    from difix_ns.fixers.reference_cache import EncodedReferences
    from difix_ns.pipeline_difix import DifixPipeline

logger = logging.getLogger(__name__)


@dataclass
class DifixFixerConfig:
    """How to load and run the Difix fixer."""

    model_name: str = "nvidia/difix_ref"
    """Hugging Face hub id or local directory: a Difix model in the HF layout, NVIDIA Fixer's layout (e.g.
    nvidia/Fixer; detected by its files), or random-tiny (tiny random weights built on the fly: plumbing only).
    difix-make-tiny-model writes tiny ones of both layouts."""
    device: Optional[str] = None
    """Torch device; None picks "cuda" when available, else "cpu"."""
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    """Weights/compute dtype on CUDA. CPU always runs float32."""
    batch_size: int = 4
    """Images per forward pass (each carries its V reference views)."""
    timestep: Optional[int] = None
    """Diffusion timestep of the single denoising step; None: the model's own (Difix 199, Fixer 250)."""
    prompt: str = "remove degradation"
    """Text prompt (Difix was trained with this fixed prompt)."""
    compile: bool = True
    """CUDA fast path: channels_last, torch.compile'd static-shape graphs replayed as CUDA graphs (each new size
    compiles once, cached on disk). False (--no-compile) runs eager. CPU always runs eager."""
    compile_min_frames: int = 16
    """Frames of one size fixed eagerly before that size is compiled (a compile takes tens of seconds, much less
    once cached on disk), so short jobs such as fix rounds of a few views stay eager. 0 compiles at once."""
    cuda_graphs: bool = True
    """Replay the compiled step as one CUDA graph per input shape (only with compile)."""
    compile_cache_dir: Optional[str] = None
    """On-disk compile cache (TORCHINDUCTOR_CACHE_DIR, unless already set); None: ~/.cache/difix_ns/torch_compile."""
    compiled_group_norm: Literal["auto", "channel_stats", "channel_sums", "stock"] = "auto"
    """GroupNorm in the compiled graphs: from per-channel statistics ("channel_stats", 2.4x faster than "stock" at
    the decoder's largest shape on an H100), from per-channel shifted sums with the group statistics stored once
    ("channel_sums", 1.5x faster than "channel_stats" there on an H200, slower on small inputs), "auto" (the
    sums from 2**25 elements, the statistics below; see difix_ns/fixers/group_norm.py) or inductor's own kernels
    ("stock")."""
    compiled_wide_attention: Literal["matmul", "sdpa"] = "matmul"
    """The VAE's 512-wide attention head in the compiled graphs: two GEMMs around a float32 softmax ("matmul") or
    SDPA's memory-efficient kernel ("sdpa"; flash attention takes at most 256-wide heads)."""
    compiled_upsample: Literal["phases", "stock"] = "phases"
    """2x nearest upsampling + 3x3 convolution (VAE decoder, UNet) in the compiled graphs: one stride-2 transposed
    convolution with 16/36 of the multiply-adds ("phases"), or the upsampling then the convolution ("stock")."""
    compiled_constants: Literal["inputs", "folded", "frozen"] = "inputs"
    """The UNet's work that depends on its fixed timestep and prompt alone (time embedding and its per-resnet
    projections, the prompt's cross-attention keys/values): recomputed at every call ("inputs"), recorded once and
    read as constants ("folded": 0.4 ms a frame faster at batch 1 with a reference on an H100), or folded by
    inductor's freezing with the weight-only work ("frozen": 0.9 ms faster on an H100, 0.7 ms on an H200, but every
    process compiles its shapes ~50 s longer). Timings with random weights: docs/difix_fast_path.md.
    difix_ns/fixers/conditioning.py. Weights edited in place afterwards do not reach "folded"/"frozen" constants."""
    cache_references: Optional[bool] = None
    """Encode each distinct reference view once and reuse its latent across frames and fix rounds (keyed by
    content). None: on CUDA, off on CPU (where the eager path stays exactly as before)."""
    reference_cache_size: int = 256
    """Reference latents kept (least recently used dropped)."""


class DifixFixer:
    """Restore renders [B,3,H,W] in [0,1], optionally conditioned on references [B,V,3,H,W]."""

    def __init__(self, config: Optional[DifixFixerConfig] = None, **overrides):
        config = config or DifixFixerConfig()
        names = {f.name for f in fields(DifixFixerConfig)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown DifixFixer option(s): {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        self.config = replace(config, **overrides)
        check_dtype_name(self.config.dtype)
        if self.config.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.config.batch_size}")
        if self.config.timestep is not None and not 0 <= self.config.timestep < 1000:
            raise ValueError(f"timestep must be in [0, 1000), got {self.config.timestep}")
        self.device = resolve_device(self.config.device)
        self.dtype = resolve_dtype(self.config.dtype, self.device)
        self._pipeline: Optional["DifixPipeline"] = None
        self._warned_refs = False
        self._fast = None  # CompiledDifixStep once built; False after a failure (eager from then on)
        self._shape_frames: dict[tuple, int] = {}
        self._ready_keys: set[tuple] = set()
        self._force_eager = False
        self._ref_cache = None
        self._resolved: "Optional[tuple[str, Optional[Path]]]" = None
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

    def load(self) -> "DifixFixer":
        """Load the weights now (otherwise the first fix, or the first property that needs them, loads them)."""
        _ = self.pipeline
        return self

    def can_load_off_thread(self) -> bool:
        """Whether :meth:`load` may run on another thread while this one goes on (e.g. trains): True for a Difix-layout
        model, whose modules are built with parameters on meta for the loading thread alone and whose loading reads
        nothing from the global RNG; False for the NVIDIA Fixer layout (its modules initialise from the global RNG),
        for ``random-tiny`` (building it seeds the global RNG: it stays where it was, at the first use) and once
        loaded. Resolves the model name on this thread."""
        from difix_ns.diffusion.model_names import is_random_tiny

        if self._pipeline is not None or is_random_tiny(self.config.model_name):
            return False
        return self._resolved_model()[1] is None

    def _resolved_model(self) -> "tuple[str, Optional[Path]]":
        """``(name or folder to load, Fixer-layout folder or None)``, resolved once."""
        if self._resolved is None:
            from difix_ns.diffusion.hub import ModelResolutionError
            from difix_ns.diffusion.model_names import model_error_message, resolve_difix_model
            from difix_ns.fixers.cosmos_files import locate_fixer_model

            name, self.plumbing_only = resolve_difix_model(self.config.model_name, option="model")
            try:
                fixer_dir = locate_fixer_model(name)
            except ModelResolutionError as err:
                raise ModelResolutionError(model_error_message(self.config.model_name, err, option=None)) from None
            self._resolved = (name, fixer_dir)
        return self._resolved

    def _load(self) -> "DifixPipeline":
        from difix_ns.diffusion.hub import ModelResolutionError
        from difix_ns.diffusion.model_names import is_random_tiny, model_error_message, plumbing_banner
        from difix_ns.pipeline_difix import DifixPipeline

        name, fixer_dir = self._resolved_model()
        if fixer_dir is not None:  # NVIDIA Fixer layout: same restore() interface, no reference mixing
            from difix_ns.fixers.cosmos_fixer import CosmosFixerPipeline

            logger.info("loading Fixer model %s on %s (%s)", self.config.model_name, self.device, self.dtype)
            return CosmosFixerPipeline.from_pretrained(fixer_dir).to(device=self.device, dtype=self.dtype)
        logger.info("loading Difix model %s on %s (%s)", self.config.model_name, self.device, self.dtype)
        try:
            pipe = DifixPipeline.from_pretrained(name, dtype=self.dtype).to(self.device)
        except ModelResolutionError as err:
            raise ModelResolutionError(model_error_message(self.config.model_name, err, option=None)) from None
        if self.plumbing_only and not is_random_tiny(self.config.model_name):  # random-tiny announced itself
            plumbing_banner(f"model {self.config.model_name}")
        return self._prepare(pipe)

    def _prepare(self, pipe: "DifixPipeline") -> "DifixPipeline":
        if not hasattr(pipe, "vae"):  # a Fixer pipeline: nothing to fold
            return pipe
        # GPU fast path: fold the decoder LoRA into its base weights (differences ~1e-5). CPU keeps the exact
        # unmerged computation so CPU results match DifixPipeline bit for bit.
        if self.device.type == "cuda":
            pipe.vae.merge_lora()
        return pipe

    @property
    def timestep(self) -> int:
        """The configured timestep, or the model's own default (Difix 199, Fixer 250)."""
        if self.config.timestep is not None:
            return self.config.timestep
        return getattr(self.pipeline, "default_timestep", 199)

    @property
    def uses_references(self) -> bool:
        """True for reference-mixing checkpoints (nvidia/difix_ref layout)."""
        return self.pipeline.reference_mixing

    # ------------------------------------------------------------------ fast path / reference cache
    @property
    def compiled(self) -> bool:
        """Whether fixes run (or will run, once a size has been seen ``compile_min_frames`` times) compiled."""
        if not self.config.compile or self._fast is False:
            return False
        return self.device.type == "cuda" or self._fast is not None

    @contextmanager
    def eager(self) -> Iterator[None]:
        """Within the block, fixes run eagerly (for short jobs such as a fix round of a few views, where a compile
        would cost more than it saves); frames fixed here do not count toward ``compile_min_frames``. For the same
        reason cuDNN picks convolution algorithms by its heuristics inside the block instead of benchmarking each
        new shape (``ns-train`` turns benchmarking on for the whole process)."""
        from difix_ns.fixers.compiled import cudnn_benchmark

        previous, self._force_eager = self._force_eager, True
        try:
            with cudnn_benchmark(False):
                yield
        finally:
            self._force_eager = previous

    def set_fast_step(self, step) -> None:
        """Use this prebuilt step (a ``CompiledDifixStep``, e.g. uncompiled on CPU in tests and smoke benchmarks)
        as the fast path; it runs from the next call on, regardless of ``compile_min_frames``."""
        self._fast = step
        self.config = replace(self.config, compile=True, compile_min_frames=0)

    @property
    def caches_references(self) -> bool:
        flag = self.config.cache_references
        return (self.device.type == "cuda") if flag is None else bool(flag)

    @property
    def reference_cache(self):
        """The :class:`difix_ns.fixers.reference_cache.ReferenceLatentCache` of this fixer."""
        if self._ref_cache is None:
            from difix_ns.fixers.reference_cache import ReferenceLatentCache

            self._ref_cache = ReferenceLatentCache(self.config.reference_cache_size)
        return self._ref_cache

    def _reference_latents(self, refs: torch.Tensor, size8: tuple[int, int]) -> torch.Tensor:
        """[b,V,3,H,W] in [0,1] -> cached latents [b,V,4,h,w] (each view resized and encoded alone): by the fast
        path's compiled encoder once the fast path runs this size with references
        (``CompiledDifixStep.reference_encoder``), else eagerly."""
        step = self._fast if self._fast not in (None, False) and not self._force_eager else None
        encoder_for = getattr(step, "reference_encoder", None)
        encode_fast = encoder_for(size8) if encoder_for is not None else None
        if encode_fast is not None:
            try:
                return self._cached_latents(refs, size8, encode_fast, "fast path")
            except Exception as err:  # noqa: BLE001  (compile errors of any kind: eager from now on)
                self._fast_failed(err)
        return self._cached_latents(refs, size8, self.pipeline.encode_latents, "eager")

    def _cached_latents(self, refs: torch.Tensor, size8: tuple[int, int], encode_latents, encoder: str) -> torch.Tensor:
        from difix_ns.fixers.reference_cache import ReferenceLatentCache

        pipe = self.pipeline

        def encode(view: torch.Tensor) -> torch.Tensor:
            return encode_latents(resize_tensor(view.to(self.device, torch.float32), size8) * 2 - 1)

        b, v = refs.shape[:2]
        # the encoder is part of the key: a hit returns what the same encoder computes again, bit for bit
        context = (id(pipe), str(pipe.model_dtype), tuple(size8), encoder)
        cache = self.reference_cache if self.caches_references else ReferenceLatentCache(0)
        latents = cache.latents(refs.reshape(b * v, *refs.shape[2:]), context, encode)
        return latents.reshape(b, v, *latents.shape[1:])

    def _fast_step(self, key: tuple, frames: int):
        """The compiled step when it should run this shape now (after ``compile_min_frames`` eager frames), else
        None."""
        if not self.compiled or not hasattr(self.pipeline, "unet"):  # the compiled step is Difix-specific
            return None
        seen = self._shape_frames.get(key, 0) + frames
        self._shape_frames[key] = seen
        if key not in self._ready_keys and seen <= self.config.compile_min_frames:
            return None
        if self._fast is None:
            try:
                from difix_ns.fixers.compiled import CompiledDifixStep

                self._fast = CompiledDifixStep(
                    self.pipeline,
                    self.timestep,
                    self.config.prompt,
                    cuda_graphs=self.config.cuda_graphs,
                    cache_dir=self.config.compile_cache_dir,
                    group_norm=self.config.compiled_group_norm,
                    wide_attention=self.config.compiled_wide_attention,
                    upsample=self.config.compiled_upsample,
                    constants=self.config.compiled_constants,
                )
            except Exception as err:  # noqa: BLE001
                self._fast_failed(err)
                return None
        return self._fast

    def _fast_failed(self, err: Exception) -> None:
        first = str(err).splitlines()[0] if str(err) else ""
        logger.warning("Difix fast path failed (%s: %s); running eager from now on", type(err).__name__, first[:200])
        self._fast = False
        pipe = self._pipeline
        if pipe is not None and hasattr(pipe, "unet"):  # eager kernels are faster in the default layout
            pipe.vae.to(memory_format=torch.contiguous_format)
            pipe.unet.to(memory_format=torch.contiguous_format)

    def _restore(self, x: torch.Tensor, r: Optional[torch.Tensor], latents: Optional[torch.Tensor]) -> torch.Tensor:
        """One chunk in [-1,1] on the device -> [b,3,h,w] in [-1,1]; fast path when available."""
        pipe = self.pipeline
        key = (tuple(x.shape), None if latents is None else tuple(latents.shape))
        fast = self._fast_step(key, x.shape[0]) if r is None and not self._force_eager else None
        if fast is not None:
            try:
                y = fast(x.to(self.dtype), latents)
                self._ready_keys.add(key)
                return y
            except Exception as err:  # noqa: BLE001  (compile errors of any kind: eager from now on)
                self._fast_failed(err)
        if latents is not None:
            return pipe.restore(x, None, prompt=self.config.prompt, timestep=self.timestep, ref_latents=latents)
        return pipe.restore(x, r, prompt=self.config.prompt, timestep=self.timestep)

    def clear_reference_cache(self) -> None:
        """Forget cached reference latents (e.g. after changing the model's weights in place)."""
        if self._ref_cache is not None:
            self._ref_cache.clear()

    def _checked_references(self, refs: Optional[torch.Tensor], batch: Optional[int] = None) -> Optional[torch.Tensor]:
        """``refs`` [B,V,3,H,W] checked (against ``batch`` images, if given); None when there are none or the model
        takes none."""
        if refs is None:
            return None
        if refs.ndim != 5 or refs.shape[2] != 3:
            raise ValueError(f"refs must be [B,V,3,H,W], got shape {tuple(refs.shape)}")
        if batch is not None and refs.shape[0] != batch:
            raise ValueError(f"got {batch} images but references for {refs.shape[0]}; counts must match")
        if refs.shape[1] == 0:
            return None
        if not self.pipeline.reference_mixing:
            if not self._warned_refs:
                logger.warning("model %s has no reference mixing; references are ignored.", self.config.model_name)
                self._warned_refs = True
            return None
        return refs

    def _model_size(self, height: int, width: int) -> tuple[int, int]:
        """The size renders of (height, width) are fixed at: floored to a multiple of 8 (Fixer: its fixed size)."""
        return getattr(self.pipeline, "working_size", None) or floor_to_multiple(height, width)

    @torch.no_grad()
    def encode_references(
        self, refs: Optional[torch.Tensor], image_size: tuple[int, int]
    ) -> Optional["EncodedReferences"]:
        """The latents of references [B,V,3,H',W'] in [0,1] for renders of ``image_size`` (H, W), as ``fix`` would
        compute them (through the reference cache, one view per encoder call), for ``fix(images, encoded)``.

        Returns a :class:`difix_ns.fixers.reference_cache.EncodedReferences`, or None when there is nothing to
        encode (no reference views, or a model without reference mixing). Encoding reads the references' content
        hashes back to the host; done here, on the caller's current stream, that wait does not sit behind a fix
        queued on another stream (``DifixRenderHook`` with ``work_ahead``)."""
        from difix_ns.fixers.reference_cache import EncodedReferences

        height, width = (int(v) for v in image_size)
        check_min_size(height, width, what="input image")
        refs = self._checked_references(refs)
        if refs is None:
            return None
        return EncodedReferences(self._reference_latents(refs, self._model_size(height, width)), (height, width))

    @torch.no_grad()
    def fix(self, images: torch.Tensor, refs: "Optional[torch.Tensor | EncodedReferences]" = None,
            cameras=None) -> torch.Tensor:
        """images [B,3,H,W] in [0,1] (H, W >= 64); refs [B,V,3,H',W'] or None -> [B,3,H,W] float32 in [0,1].

        Implements ``difix_ns.fixers.ImageFixer``; ``cameras`` is accepted for the contract and not used. ``refs``
        may also be what :meth:`encode_references` returned for these images' size.

        Sizes are floored to a multiple of 8 for the model and resized back (antialiased bilinear); references are
        resized to the render's floored size. Runs in chunks of ``batch_size``.
        """
        from difix_ns.fixers.reference_cache import EncodedReferences

        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B,3,H,W], got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        check_min_size(height, width, what="input image")
        encoded = None
        if isinstance(refs, EncodedReferences):
            if refs.latents.shape[0] != images.shape[0]:
                raise ValueError(f"got {images.shape[0]} images but encoded references for {refs.latents.shape[0]}")
            if tuple(refs.image_size) != (height, width):
                raise ValueError(f"references were encoded for {tuple(refs.image_size)} renders, got {height}x{width}")
            encoded, refs = refs.latents, None
        refs = self._checked_references(refs, images.shape[0])
        size8 = self._model_size(height, width)
        bs, total = self.config.batch_size, images.shape[0]
        outputs = []
        for start in range(0, total, bs):
            chunk = images[start : start + bs].to(self.device, torch.float32)
            ref_chunk = refs[start : start + bs] if refs is not None else None
            latents = encoded[start : start + bs].to(self.device) if encoded is not None else None
            count = chunk.shape[0]
            if self.compiled and not self._force_eager and total > bs and count < bs:
                # a short tail chunk is padded so it reuses the full chunk's compiled graph
                chunk = torch.cat([chunk, chunk[-1:].expand(bs - count, -1, -1, -1)])
                if ref_chunk is not None:
                    ref_chunk = torch.cat([ref_chunk, ref_chunk[-1:].expand(bs - count, -1, -1, -1, -1)])
                if latents is not None:
                    latents = torch.cat([latents, latents[-1:].expand(bs - count, -1, -1, -1, -1)])
            x = resize_tensor(chunk, size8) * 2 - 1
            r = None
            if ref_chunk is not None and (self.caches_references or self.compiled):
                latents = self._reference_latents(ref_chunk, size8)
            elif ref_chunk is not None:
                r = resize_tensor(ref_chunk.to(self.device, torch.float32), size8) * 2 - 1
            y = self._restore(x, r, latents)[:count]
            y = resize_tensor(((y.float() + 1) / 2).clamp(0, 1), (height, width)).clamp(0, 1)  # clamp, then resize
            outputs.append(y.to(images.device))
        return torch.cat(outputs)

    def __call__(self, images: torch.Tensor, refs: Optional[torch.Tensor] = None, cameras=None) -> torch.Tensor:
        return self.fix(images, refs, cameras)

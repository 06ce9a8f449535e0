"""The CUDA fast path of ``DifixFixer``: compiled static-shape graphs replayed as CUDA graphs.

``CompiledDifixStep(pipe, timestep, prompt)`` runs the same single step as ``DifixPipeline.restore`` (with
reference *latents*, see ``reference_cache``) but

* with weights in channels_last and the VAE LoRA merged (the caller's ``DifixFixer._prepare`` merges it);
* SDPA attention everywhere (VAE mid block, UNet self/cross attention, the reference-mixing processor), and with
  references the UNet's last self-attention for the degraded view's queries only (``reference_attention``: nothing
  after it mixes views, and only the degraded view's output is used);
* the VAE encoder, the UNet and the x0 step + VAE decoder compiled by inductor with static shapes (``dynamic=False``):
  GroupNorm+SiLU and the other elementwise work fuse into Triton kernels, 1x1 convolutions become matmuls;
* GroupNorm computed from per-channel statistics in the compiled graphs (``group_norm="auto"``: shifted sums with the
  group statistics stored for large inputs, ``var_mean`` for small ones; see ``group_norm``; "stock" keeps
  inductor's own), and the VAE's 512-wide attention head as two GEMMs around a float32
  softmax (``wide_attention="matmul"``, see ``wide_attention``; "sdpa" keeps SDPA), and each 2x nearest upsampling
  + 3x3 convolution as one stride-2 transposed convolution (``upsample="phases"``, see ``upsample_conv``;
  "stock" keeps the pair); eager calls of the same modules are unchanged;
* with ``constants="folded"`` or ``"frozen"``, the UNet's work that depends on its fixed conditioning alone (the time
  embedding and its per-resnet projections, the prompt's cross-attention keys and values) done once instead of at
  every call: recorded module outputs, or inductor's freezing, which also folds weight-only work such as the
  upsamplers' kernels (see ``conditioning``); weights edited in place afterwards do not reach those constants;
* the whole step captured once per input shape as one CUDA graph (cuDNN algorithms picked by its benchmark mode
  during warm-up), so a frame is a single graph launch with no per-kernel CPU overhead;
* new reference views encoded by the VAE encoder compiled for one view (``encode_reference``; compiled when the
  step first runs with references at a size, handed to the fixer by ``reference_encoder``), instead of eagerly in
  the channels_last layout, where eager GroupNorm is slow.

Compiled artifacts go to a persistent on-disk cache (``compile_cache_dir``; inductor's FX-graph, AOT-autograd and
Triton caches), so a second process with the same shapes skips most of the compile. A new shape (size, batch,
number of references) compiles and captures once. Failures are the caller's to catch: ``DifixFixer`` falls back to
the eager path with a one-line warning; a failed CUDA-graph capture alone falls back to the compiled functions.
"""
from __future__ import annotations

import functools
import logging
import os
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from difix_ns.fixers.conditioning import CONSTANTS_KINDS

logger = logging.getLogger(__name__)

INDUCTOR_OPTIONS = {
    "conv_1x1_as_mm": True,  # decoder skips, conv shortcuts, quant convs: plain matmuls in channels_last
    "fx_graph_cache": True,  # persistent compiled-graph cache (on by default; stated for older torch)
    "triton.cudagraphs": False,  # the whole step is captured below instead (one graph, no output aliasing rules)
}
"""Inductor options (default mode; max-autotune's conv/matmul template search costs minutes per shape)."""


def default_compile_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/difix_ns/torch_compile`` (``~/.cache/difix_ns/torch_compile``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "difix_ns" / "torch_compile"


def use_compile_cache(path: Optional[str] = None) -> str:
    """Point inductor's on-disk caches at ``path`` (default :func:`default_compile_cache_dir`) unless the process
    set ``TORCHINDUCTOR_CACHE_DIR`` itself (inductor's own ``/tmp`` default, filled in on first use, does not count);
    returns the directory in use."""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or current == _inductor_default_dir():
        folder = Path(path) if path else default_compile_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def _inductor_default_dir() -> Optional[str]:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir

        return os.path.abspath(default_cache_dir())
    except Exception:  # noqa: BLE001  (private API; without it only an unset variable is replaced)
        return None


@contextmanager
def cudnn_benchmark(enabled: bool = True) -> Iterator[None]:
    """Within the block cuDNN benchmarks every new convolution shape for its fastest algorithm (``enabled``), or
    picks one by its heuristics; the process setting is restored afterwards. On while the fast path warms up and
    captures (replays reuse the captured kernels); off for eager fix rounds (``DifixFixer.eager``)."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def use_sdpa_attention(*models: torch.nn.Module) -> int:
    """Give every diffusers ``Attention`` that still has a non-SDPA default processor ``AttnProcessor2_0``
    (custom processors such as the reference-mixing one are kept; they call SDPA themselves). Returns the count."""
    from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

    changed = 0
    for model in models:
        for module in model.modules():
            if isinstance(module, Attention) and type(module.processor) is AttnProcessor:
                module.set_processor(AttnProcessor2_0())
                changed += 1
    return changed


def x0_coefficients(scheduler, timestep: int) -> tuple[float, float]:
    """(a, b) with x0 = a * z + b * model_output for the scheduler's prediction type at ``timestep``."""
    abar = float(scheduler.alphas_cumprod[int(timestep)])
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return 1.0 / abar**0.5, -((1.0 - abar) ** 0.5) / abar**0.5
    if kind == "v_prediction":
        return abar**0.5, -((1.0 - abar) ** 0.5)
    if kind == "sample":
        return 0.0, 1.0
    raise ValueError(f"unsupported scheduler prediction_type {kind!r}")


def with_freezing(compiled: Callable) -> Callable:
    """``compiled`` (a ``torch.compile`` result) called with inductor's freezing on: parameters and buffers become
    constants of its graphs and whatever depends on them alone is computed at compile time. Dynamo reads the flag
    when it traces (to keep parameters as constants rather than graph inputs), so it is set around every call; a
    ``torch.compile(options={"freezing": True})`` alone leaves them inputs and folds nothing."""
    import torch._inductor.config as inductor_config

    @functools.wraps(compiled, updated=())
    def call(*args, **kwargs):
        with inductor_config.patch(freezing=True):
            return compiled(*args, **kwargs)

    return call


class _CaptureError(RuntimeError):
    """CUDA-graph capture failed (the compiled functions themselves worked)."""


class _Graph:
    def __init__(self, graph, x, zref, out):
        self.graph, self.x, self.zref, self.out = graph, x, zref, out


class CompiledDifixStep:
    """One Difix step, compiled, replayed as CUDA graphs: ``step(x, ref_latents) -> y`` (see module docstring).

    ``x`` [B,3,h,w] in [-1,1] in the model dtype (h, w multiples of 8); ``ref_latents`` [B,V,4,h/8,w/8] or None.
    Returns a new tensor [B,3,h,w] in [-1,1] (model dtype). ``compile=False`` and ``cuda_graphs=False`` leave
    those parts out (the CPU tests use both off; the benchmark times each layer).
    """

    def __init__(
        self,
        pipe,
        timestep: int,
        prompt: str,
        cuda_graphs: bool = True,
        max_graphs: int = 4,
        cache_dir: Optional[str] = None,
        compile: bool = True,
        group_norm: str = "auto",
        wide_attention: str = "matmul",
        upsample: str = "phases",
        constants: str = "inputs",
    ):
        on_cuda = pipe.model_device.type == "cuda"
        if cuda_graphs and not on_cuda:
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self.pipe = pipe
        self.timestep = int(timestep)
        self.prompt = prompt
        self.cuda_graphs = bool(cuda_graphs)
        if constants not in CONSTANTS_KINDS:
            raise ValueError(f"constants must be one of {', '.join(CONSTANTS_KINDS)}; got {constants!r}")
        self.constants = constants
        self.max_graphs = max(1, int(max_graphs))
        self.cache_dir = use_compile_cache(cache_dir) if compile else None
        self._coef = x0_coefficients(pipe.scheduler, self.timestep)
        self._scale = float(pipe.vae.config.scaling_factor)
        use_sdpa_attention(pipe.vae, pipe.unet)
        pipe.vae.to(memory_format=torch.channels_last)
        pipe.unet.to(memory_format=torch.channels_last)
        self.group_norm, self.wide_attention, self.upsample = self._use_kernels(group_norm, wide_attention, upsample,
                                                                               compile)
        self._encode, self._unet, self._decode = self._encode_eager, pipe.unet, self._decode_eager
        self._encode_one = self._encode_reference_eager
        self._compiled = compile
        if compile:  # compile=False: the same step uncompiled (CPU tests of the plumbing, benchmarks' ablations)
            self._encode = self._compile(self._encode_eager)
            self._unet = self._compile(pipe.unet)
            self._decode = self._compile(self._decode_eager)
            self._encode_one = self._compile(self._encode_reference_eager)
        self._reference_sizes: set[tuple[int, int]] = set()
        self._conditioning: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._conditioned_unets: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._pool = None

    def _use_kernels(self, group_norm: str, wide_attention: str, upsample: str, compile: bool) -> tuple[str, str, str]:
        """Set the GroupNorm formulation, the VAE attention and the upsampling convolutions of the compiled graphs;
        returns what is in use."""
        from difix_ns.fixers.group_norm import GROUP_NORM_KINDS, use_compiled_group_norm
        from difix_ns.fixers.upsample_conv import UPSAMPLE_KINDS, use_phase_upsample
        from difix_ns.fixers.wide_attention import WIDE_ATTENTION_KINDS, use_stock_attention, use_wide_head_attention

        if group_norm not in GROUP_NORM_KINDS:
            raise ValueError(f"group_norm must be one of {', '.join(GROUP_NORM_KINDS)}; got {group_norm!r}")
        if wide_attention not in WIDE_ATTENTION_KINDS:
            raise ValueError(f"wide_attention must be one of {', '.join(WIDE_ATTENTION_KINDS)}; got {wide_attention!r}")
        if upsample not in UPSAMPLE_KINDS:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_KINDS)}; got {upsample!r}")
        if not compile:  # nothing is traced: the modules would behave as stock anyway
            group_norm, wide_attention, upsample = "stock", "sdpa", "stock"
        for model in (self.pipe.vae, self.pipe.unet):
            use_compiled_group_norm(model, group_norm)
            use_phase_upsample(model, upsample)
        if wide_attention == "matmul":
            use_wide_head_attention(self.pipe.vae)
        else:
            use_stock_attention(self.pipe.vae)
        return group_norm, wide_attention, upsample

    def _compile(self, fn: Callable) -> Callable:
        compiled = torch.compile(fn, dynamic=False, options=dict(INDUCTOR_OPTIONS))
        return with_freezing(compiled) if self.constants == "frozen" else compiled

    # ------------------------------------------------------------------ the step (compiled pieces)
    def _encode_eager(self, x: torch.Tensor):
        posterior, skips = self.pipe.vae.encode_with_skips(x)
        return posterior.mode() * self._scale, skips

    def _encode_reference_eager(self, x: torch.Tensor) -> torch.Tensor:
        # DifixPipeline.encode_latents without its device/dtype cast (done by encode_reference, outside the traced
        # graph, as for the step's own inputs); the skips are dead code in the compiled graph
        posterior, _ = self.pipe.vae.encode_with_skips(x)
        return posterior.mode() * self._scale

    def _decode_eager(self, z: torch.Tensor, eps: torch.Tensor, skips):
        a, b = self._coef
        z0 = (a * z.float() + b * eps.float()).to(z.dtype)
        return self.pipe.vae.decode_with_skips(z0 / self._scale, skips).clamp(-1, 1)

    def _cond(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if n not in self._conditioning:
            pipe = self.pipe
            emb = pipe.prompt_embeddings(self.prompt).to(device=pipe.model_device, dtype=pipe.model_dtype)
            emb = emb.expand(n, -1, -1).contiguous()
            t = torch.full((n,), self.timestep, device=pipe.model_device, dtype=torch.long)
            self._conditioning[n] = (emb, t)
        return self._conditioning[n]

    def _conditioned_unet(self, n: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """``sample -> eps`` for ``n`` rows with the conditioning as constants (``constants``), compiled per ``n``."""
        if n not in self._conditioned_unets:
            from difix_ns.fixers.conditioning import ConditionedUNet

            unet = ConditionedUNet(self.pipe.unet, *self._cond(n), kind=self.constants)
            self._conditioned_unets[n] = self._compile(unet) if self._compiled else unet
        return self._conditioned_unets[n]

    def _eps(self, joint: torch.Tensor) -> torch.Tensor:
        """The step's one UNet call: eps for the ``joint`` rows (frames x views), with the conditioning as graph
        inputs or as constants (``constants``)."""
        if self.constants != "inputs":
            return self._conditioned_unet(joint.shape[0])(joint)
        emb, t = self._cond(joint.shape[0])
        return self._unet(joint, t, encoder_hidden_states=emb, return_dict=False)[0]

    def _step(self, x: torch.Tensor, zref: Optional[torch.Tensor]) -> torch.Tensor:
        from difix_ns.models.reference_attention import reference_views

        z, skips = self._encode(x)
        if zref is not None and zref.shape[1] > 0:
            views = 1 + zref.shape[1]
            joint = torch.cat([z[:, None], zref], dim=1).flatten(0, 1)
        else:
            views, joint = 1, z
        # the references' rows of eps are not used: their queries in the UNet's last self-attention are skipped
        with reference_views(self.pipe.unet, views, render_queries_last=True):
            eps = self._eps(joint)
        if views > 1:
            eps = eps[::views]
        return self._decode(z, eps, skips)

    # ------------------------------------------------------------------ entry points
    @torch.no_grad()
    def encode_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Latent [1,4,h/8,w/8] of one reference view ``x`` [1,3,h,w] in [-1,1]: ``DifixPipeline.encode_latents``
        through the VAE encoder compiled for one view of that size (uncaptured: a reference is encoded once).

        One view per call, so a latent never depends on what else is encoded (``ReferenceLatentCache``'s promise
        that a hit equals a recomputation holds for this encoder, as for the eager one)."""
        if x.ndim != 4 or x.shape[0] != 1:
            raise ValueError(f"encode_reference takes one view [1,3,h,w], got shape {tuple(x.shape)}")
        x = x.to(dtype=self.pipe.model_dtype).contiguous(memory_format=torch.channels_last)
        with cudnn_benchmark():
            return self._encode_one(x).clone()

    def reference_encoder(self, size: tuple[int, int]) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """:meth:`encode_reference` once the step has run with references at ``size`` (h, w), which compiles their
        encoder with it; else None, so a size the fast path does not run yet (``compile_min_frames``) compiles
        nothing for a reference alone."""
        return self.encode_reference if tuple(size) in self._reference_sizes else None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, ref_latents: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        if ref_latents is not None and ref_latents.shape[1] == 0:
            ref_latents = None
        if ref_latents is not None and tuple(x.shape[-2:]) not in self._reference_sizes:
            # references at a new size: compile their encoder now, with the step, not at the next new reference
            self.encode_reference(x[:1])
            self._reference_sizes.add(tuple(x.shape[-2:]))
        if self.cuda_graphs:
            try:
                return self._replay(x, ref_latents)
            except _CaptureError as err:
                logger.warning("Difix fast path: CUDA-graph capture failed (%s); using compiled kernels only", err)
                self.cuda_graphs = False
                self._graphs.clear()
                self._pool = None
        with cudnn_benchmark():
            return self._step(x, ref_latents).clone()

    def warm_up(self, x: torch.Tensor, ref_latents: Optional[torch.Tensor] = None) -> None:
        """Compile (and capture) for this input shape now."""
        self(x, ref_latents)

    def _key(self, x, zref) -> tuple:
        return (tuple(x.shape), None if zref is None else tuple(zref.shape), x.dtype)

    def _replay(self, x: torch.Tensor, zref: Optional[torch.Tensor]) -> torch.Tensor:
        key = self._key(x, zref)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture(x, zref)
            self._graphs[key] = entry
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
            entry.x.copy_(x)
            if zref is not None:
                entry.zref.copy_(zref)
        entry.graph.replay()
        return entry.out.clone()

    def _capture(self, x: torch.Tensor, zref: Optional[torch.Tensor]) -> _Graph:
        static_x = x.clone(memory_format=torch.channels_last)
        static_zref = zref.clone() if zref is not None else None
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with cudnn_benchmark(), torch.cuda.stream(side):
            for _ in range(2):  # the first call compiles; both pick cuDNN algorithms and warm the allocator
                self._step(static_x, static_zref)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: CUDA work of other threads (a viewer's render thread, training) cannot spoil the capture
            with cudnn_benchmark(), torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                out = self._step(static_x, static_zref)
        except Exception as err:  # noqa: BLE001  (any capture problem: fall back to uncaptured compiled calls)
            torch.cuda.synchronize()
            raise _CaptureError(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err
        if self._pool is None:
            self._pool = graph.pool()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # warm-up and cuDNN search workspaces
        return _Graph(graph, static_x, static_zref, out)

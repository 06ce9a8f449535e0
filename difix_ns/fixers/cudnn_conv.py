"""A resnet's GroupNorm + SiLU + 3x3 convolution as one fused cuDNN graph in the fast path's compiled graphs.

A diffusers ``ResnetBlock2D`` (the VAE's and the UNet's) runs norm1 -> SiLU -> conv1 (+ time embedding) -> norm2 ->
SiLU -> conv2 -> + skip. Compiled by inductor, each GroupNorm is a statistics pass and a normalise + SiLU pass over
the activation, around cuDNN convolutions that inductor cannot fuse into: three passes over each activation per
layer where one would do. cuDNN's graph API (NVIDIA's ``cudnn`` frontend package, ``nvidia-cudnn-frontend``) builds
a convolution that applies a per-channel scale, shift and swish to its input as it loads it and sums its output (and
its square) per channel in its epilogue (``genstats``). :func:`norm_silu_conv3x3` is that layer as a PyTorch custom
operator, so the compiled graphs call it like a convolution (and CUDA graphs capture it):

    y = conv3x3(silu(x * scale + shift), weight) + bias [+ residual],  sums = sum_hw(y), sums_sq = sum_hw(y^2)

with ``scale``, ``shift`` GroupNorm's per-(sample, channel) affine (``group_norm.scale_shift_from_sums``) and
``bias`` per (sample, channel) (a convolution's bias plus a resnet's time embedding). ``genstats`` sums over the batch,
GroupNorm's statistics are per sample: the operator runs a batch-1 graph once per sample.

:class:`FusedResnetBlock2D` (``use_fused_resnets(model, "cudnn")``, ``DifixFixerConfig.compiled_resnets``) is
``ResnetBlock2D`` whose compiled graphs compute norm1's scale and shift from its input (one statistics pass,
``group_norm.scale_shift_by_size``), run conv1 fused (its sums give norm2's scale and shift) and conv2 fused with the
skip added in its epilogue; eager calls are ``ResnetBlock2D.forward`` itself. Without CUDA or the frontend package
(and for dtypes cuDNN is not asked to fuse) the operator computes the same function unfused in PyTorch, which is what
the CPU tests check the resnet's decomposition with. Random weights here: timings and numerics, not quality.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from difix_ns.fixers.group_norm import apply_scale_shift, scale_shift_by_size, scale_shift_from_sums
from difix_ns.fixers.upsample_conv import plain_conv

logger = logging.getLogger(__name__)

RESNET_KINDS = ("stock", "cudnn")
FUSED_DTYPES = (torch.bfloat16, torch.float16)
"""Input dtypes the operator hands to cuDNN (others run unfused in PyTorch)."""


def cudnn_frontend():
    """The ``cudnn`` frontend module, or None if it is not installed or cannot load libcudnn."""
    try:
        import cudnn
    except Exception:  # noqa: BLE001  (missing package or library: the unfused path is used)
        return None
    return cudnn


def unfused_norm_silu_conv3x3(x, scale, shift, weight, bias, residual=None, stats: bool = True):
    """:func:`norm_silu_conv3x3` in PyTorch: the normalised input rounded to x's dtype, a plain convolution, the
    bias and residual added in float32; sums of the rounded output in float32."""
    v = apply_scale_shift(x, scale, shift, silu=True)
    y = F.conv2d(v, weight, padding=1).float() + bias.float()[:, :, None, None]
    if residual is not None:
        y = y + residual.float()
    y = y.to(x.dtype).contiguous(memory_format=torch.channels_last)
    if not stats:
        return y, y.new_zeros((y.shape[0], 0), dtype=torch.float32), y.new_zeros((y.shape[0], 0), dtype=torch.float32)
    yf = y.float()
    return y, yf.sum((2, 3)), (yf * yf).sum((2, 3))


class _Graph:
    """One batch-1 fused layer as a built cuDNN graph (fixed shapes and dtype), with its fastest plan and workspace."""

    def __init__(self, cudnn, handle, x, weight, residual: bool, stats: bool, max_plans: int = 4):
        _, c_in, h, w = x.shape
        c_out = weight.shape[0]
        io = {torch.bfloat16: cudnn.data_type.BFLOAT16, torch.float16: cudnn.data_type.HALF}[x.dtype]
        f32 = cudnn.data_type.FLOAT
        g = cudnn.pygraph(io_data_type=io, intermediate_data_type=f32, compute_data_type=f32, handle=handle)
        out_strides = [c_out * h * w, 1, w * c_out, c_out]
        self.x = g.tensor(name="x", dim=[1, c_in, h, w], stride=[c_in * h * w, 1, w * c_in, c_in], data_type=io)
        self.w = g.tensor(name="w", dim=[c_out, c_in, 3, 3], stride=[9 * c_in, 1, 3 * c_in, c_in], data_type=io)
        self.scale = g.tensor(name="scale", dim=[1, c_in, 1, 1], stride=[c_in, 1, c_in, c_in], data_type=f32)
        self.shift = g.tensor(name="shift", dim=[1, c_in, 1, 1], stride=[c_in, 1, c_in, c_in], data_type=f32)
        self.bias = g.tensor(name="bias", dim=[1, c_out, 1, 1], stride=[c_out, 1, c_out, c_out], data_type=f32)
        v = g.swish(input=g.bias(input=g.scale(input=self.x, scale=self.scale), bias=self.shift))
        y = g.conv_fprop(image=v, weight=self.w, padding=[1, 1], stride=[1, 1], dilation=[1, 1], compute_data_type=f32)
        y = g.bias(input=y, bias=self.bias)
        self.residual = None
        if residual:
            self.residual = g.tensor(name="residual", dim=[1, c_out, h, w], stride=out_strides, data_type=io)
            y = g.add(a=y, b=self.residual)
        y.set_output(True).set_data_type(io).set_dim([1, c_out, h, w]).set_stride(out_strides)
        self.y = y
        self.sums = self.sums_sq = None
        if stats:
            self.sums, self.sums_sq = g.genstats(input=y)
            for t in (self.sums, self.sums_sq):
                t.set_output(True).set_data_type(f32).set_dim([1, c_out, 1, 1]).set_stride([c_out, 1, c_out, c_out])
        g.validate()
        g.build_operation_graph()
        g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        g.check_support()
        built = []
        for i in range(min(g.get_execution_plan_count(), max_plans)):
            try:
                g.build_plan_at_index(i)
                built.append(i)
            except Exception:  # noqa: BLE001  (a plan that does not build is skipped)
                continue
        if not built:
            raise RuntimeError("cuDNN built none of the fused convolution's plans")
        self.graph, self.handle, self.cudnn = g, handle, cudnn
        self.workspace = torch.empty(max(1, *(g.get_workspace_size_plan_at_index(i) for i in built)),
                                     device=x.device, dtype=torch.uint8)
        self.plan = built[0]
        if len(built) > 1:
            self.plan = self._fastest(built, x, weight)
        self.plan_name = g.get_plan_name_at_index(self.plan)

    def pack(self, x, weight, scale, shift, bias, residual, y, sums, sums_sq) -> dict:
        pack = {self.x: x, self.w: weight, self.scale: scale, self.shift: shift, self.bias: bias, self.y: y}
        if self.residual is not None:
            pack[self.residual] = residual
        if self.sums is not None:
            pack[self.sums], pack[self.sums_sq] = sums, sums_sq
        return pack

    def run(self, pack: dict, plan: Optional[int] = None) -> None:
        self.cudnn.set_stream(handle=self.handle, stream=torch.cuda.current_stream().cuda_stream)
        self.graph.execute_plan_at_index(pack, self.workspace, index=self.plan if plan is None else plan,
                                         handle=self.handle)

    def _fastest(self, plans: list, x, weight) -> int:
        """The plan with the least time over a few calls on scratch tensors of the graph's shapes."""
        c_in, c_out = x.shape[1], weight.shape[0]
        scratch_x = torch.randn_like(x[:1])
        ones = torch.ones(1, c_in, 1, 1, device=x.device)
        zeros_in, zeros_out = torch.zeros_like(ones), torch.zeros(1, c_out, 1, 1, device=x.device)
        y = torch.empty((1, c_out) + tuple(x.shape[2:]), device=x.device, dtype=x.dtype).contiguous(
            memory_format=torch.channels_last)
        sums = (torch.zeros_like(zeros_out), torch.zeros_like(zeros_out))
        pack = self.pack(scratch_x, weight, ones, zeros_in, zeros_out, y if self.residual is not None else None, y,
                         *sums)
        times = []
        for plan in plans:
            try:
                for _ in range(2):
                    self.run(pack, plan)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(5):
                    self.run(pack, plan)
                end.record()
                end.synchronize()
                times.append((start.elapsed_time(end), plan))
            except Exception:  # noqa: BLE001  (a plan that fails to run is not chosen)
                continue
        if not times:
            raise RuntimeError("none of the fused convolution's plans ran")
        return min(times)[1]


_GRAPHS: dict = {}
_HANDLES: dict = {}
_UNSUPPORTED: set = set()


def _graph_for(x, weight, residual: bool, stats: bool) -> Optional[_Graph]:
    """The built graph for these shapes (built on first use, then cached), or None if cuDNN cannot build it here
    (logged once per shape)."""
    key = (tuple(x.shape[1:]), tuple(weight.shape), x.dtype, x.device.index, residual, stats)
    if key in _GRAPHS:
        return _GRAPHS[key]
    if key in _UNSUPPORTED:
        return None
    cudnn = cudnn_frontend()
    if cudnn is None:
        _UNSUPPORTED.add(key)
        return None
    try:
        device = x.device.index if x.device.index is not None else torch.cuda.current_device()
        if device not in _HANDLES:
            with torch.cuda.device(device):
                _HANDLES[device] = cudnn.create_handle()
        _GRAPHS[key] = _Graph(cudnn, _HANDLES[device], x[:1], weight, residual, stats)
    except Exception as err:  # noqa: BLE001  (unsupported pattern or shape: the unfused path computes it)
        logger.warning("fused cuDNN convolution unavailable for %s (%s: %s); computing it unfused", key,
                       type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        _UNSUPPORTED.add(key)
        return None
    return _GRAPHS[key]


@torch.library.custom_op("difix_ns::norm_silu_conv3x3", mutates_args=())
def norm_silu_conv3x3(
    x: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    residual: Optional[torch.Tensor],
    stats: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``conv3x3(silu(x * scale + shift), weight) + bias [+ residual]`` and, with ``stats``, the output's
    per-(sample, channel) sums and sums of squares (float32; empty [N, 0] without). x [N, C_in, H, W]; scale, shift
    [N, C_in] float32; weight [C_out, C_in, 3, 3]; bias [N, C_out]; residual [N, C_out, H, W] or None. The output is
    channels_last in x's dtype. Fused by cuDNN on CUDA for bf16 / fp16 when the frontend package can build the graph,
    else computed unfused (:func:`unfused_norm_silu_conv3x3`)."""
    graph = None
    if x.is_cuda and x.dtype in FUSED_DTYPES and tuple(weight.shape[2:]) == (3, 3):
        graph = _graph_for(x, weight, residual is not None, stats)
    if graph is None:
        return unfused_norm_silu_conv3x3(x, scale, shift, weight, bias, residual, stats)
    n, _, h, w = x.shape
    c_out = weight.shape[0]
    x = x.contiguous(memory_format=torch.channels_last)
    weight = weight.contiguous(memory_format=torch.channels_last)
    y = torch.empty((n, c_out, h, w), device=x.device, dtype=x.dtype).contiguous(memory_format=torch.channels_last)
    channels = c_out if stats else 0
    sums, sums_sq = (torch.zeros((n, channels), device=x.device, dtype=torch.float32) for _ in range(2))
    scale, shift, bias = scale.float().contiguous(), shift.float().contiguous(), bias.float().contiguous()
    if residual is not None:
        residual = residual.contiguous(memory_format=torch.channels_last)
    for i in range(n):  # genstats sums over the batch; GroupNorm's statistics are per sample
        per_channel_in, per_channel_out = (1, scale.shape[1], 1, 1), (1, c_out, 1, 1)
        graph.run(graph.pack(
            x[i:i + 1], weight, scale[i].view(per_channel_in), shift[i].view(per_channel_in),
            bias[i].view(per_channel_out), residual[i:i + 1] if residual is not None else None, y[i:i + 1],
            sums[i].view(per_channel_out) if stats else None, sums_sq[i].view(per_channel_out) if stats else None))
    return y, sums, sums_sq


@norm_silu_conv3x3.register_fake
def _(x, scale, shift, weight, bias, residual, stats):
    n, _, h, w = x.shape
    c_out = weight.shape[0]
    y = torch.empty_strided((n, c_out, h, w), (c_out * h * w, 1, w * c_out, c_out), dtype=x.dtype, device=x.device)
    channels = c_out if stats else 0
    return y, x.new_empty((n, channels), dtype=torch.float32), x.new_empty((n, channels), dtype=torch.float32)


def fused_resnet_applies(block: nn.Module) -> bool:
    """Whether ``block`` (a ``ResnetBlock2D``) is, right now, the pattern :class:`FusedResnetBlock2D` computes:
    GroupNorm -> SiLU -> 3x3 conv (+ a time embedding added before norm2) -> GroupNorm -> SiLU -> 3x3 conv -> + skip,
    no up/downsampling, no dropout at work, an output scale of 1."""
    conv1, conv2 = plain_conv(getattr(block, "conv1", None)), plain_conv(getattr(block, "conv2", None))
    norms = [getattr(block, "norm1", None), getattr(block, "norm2", None)]

    def plain3x3(conv):
        return (conv is not None and tuple(conv.kernel_size) == (3, 3) and tuple(conv.stride) == (1, 1)
                and tuple(conv.padding) == (1, 1) and tuple(conv.dilation) == (1, 1) and conv.groups == 1
                and conv.padding_mode == "zeros")

    return (
        plain3x3(conv1) and plain3x3(conv2)
        and all(isinstance(m, nn.GroupNorm) and m.affine for m in norms)
        and isinstance(getattr(block, "nonlinearity", None), nn.SiLU)
        and getattr(block, "upsample", None) is None and getattr(block, "downsample", None) is None
        and getattr(block, "time_embedding_norm", None) == "default"
        and float(getattr(block, "output_scale_factor", 0.0)) == 1.0
        and not (block.training and block.dropout.p > 0)
    )


class FusedResnetBlock2D(ResnetBlock2D):
    """``ResnetBlock2D`` (same parameters and state dict) whose ``torch.compile``'d graphs run each GroupNorm + SiLU +
    convolution as :func:`norm_silu_conv3x3`; eager calls are ``ResnetBlock2D.forward`` itself."""

    def forward(self, input_tensor: torch.Tensor, temb: Optional[torch.Tensor] = None, *args, **kwargs) -> torch.Tensor:
        if not (torch.compiler.is_compiling() and not args and not kwargs and fused_resnet_applies(self)):
            return super().forward(input_tensor, temb, *args, **kwargs)
        return self.fused_forward(input_tensor, temb)

    def fused_forward(self, x: torch.Tensor, temb: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The block through :func:`norm_silu_conv3x3` (what compiled graphs run; callable eagerly too)."""
        n, _, h, w = x.shape
        conv1, conv2 = plain_conv(self.conv1), plain_conv(self.conv2)
        scale1, shift1 = scale_shift_by_size(x, self.norm1.num_groups, self.norm1.weight, self.norm1.bias,
                                             self.norm1.eps)
        bias1 = _bias(conv1, n, x)
        if self.time_emb_proj is not None and temb is not None:
            t = temb if self.skip_time_act else self.nonlinearity(temb)
            bias1 = bias1 + self.time_emb_proj(t).float()
        hidden, sums, sums_sq = torch.ops.difix_ns.norm_silu_conv3x3(x, scale1, shift1, conv1.weight, bias1, None,
                                                                     True)
        scale2, shift2 = scale_shift_from_sums(sums, sums_sq, h * w, self.norm2.num_groups, self.norm2.weight,
                                               self.norm2.bias, self.norm2.eps)
        skip = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        out, _, _ = torch.ops.difix_ns.norm_silu_conv3x3(hidden, scale2, shift2, conv2.weight, _bias(conv2, n, x),
                                                         skip, False)
        return out


def _bias(conv: nn.Conv2d, n: int, like: torch.Tensor) -> torch.Tensor:
    """A convolution's bias per (sample, channel), float32 ([N, C_out]; zeros without one)."""
    if conv.bias is None:
        return like.new_zeros((n, conv.out_channels), dtype=torch.float32)
    return conv.bias.float()[None].expand(n, -1)


def use_fused_resnets(model: nn.Module, kind: str) -> int:
    """Make every ``ResnetBlock2D`` of ``model`` compile as ``kind``: "cudnn" (:class:`FusedResnetBlock2D`) or
    "stock". Switches the blocks' class in place (parameters, state dict and eager results unchanged); returns how
    many blocks it set."""
    if kind not in RESNET_KINDS:
        raise ValueError(f"resnet kind must be one of {', '.join(RESNET_KINDS)}; got {kind!r}")
    count = 0
    for module in model.modules():
        if type(module) not in (ResnetBlock2D, FusedResnetBlock2D):
            continue
        module.__class__ = ResnetBlock2D if kind == "stock" else FusedResnetBlock2D
        count += 1
    return count

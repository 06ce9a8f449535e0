"""GroupNorm + SiLU + 3x3 convolution at the SD VAE's resnet shapes as fused cuDNN graphs (the graph API of NVIDIA's
``cudnn`` frontend package) against what the fast path runs today (inductor's GroupNorm passes + cuDNN's plain
convolution); JSON.

Why: ``docs/difix_fast_path.md`` ("What is left to batch 8") leaves one lever for #12's batch-8 and reference goals:
convolutions that take GroupNorm's scale, shift and SiLU as a prologue on their input and give the next GroupNorm's
statistics from their epilogue, so each activation is read and written once per layer instead of three times.
Session 25 measured a hand-written Triton kernel doing this (``bench_fused_conv.py``): 2.1-2.9x slower. cuDNN's
graph API describes the same layer as one operation graph (pointwise scale, bias and swish on the input, the
convolution, a bias on its output, ``genstats``: per-channel sums and sums of squares of the output) and runs it if
one of its engines supports the pattern. This script asks, per shape and batch, which of these graphs cuDNN builds on
this GPU and how fast its best plan runs:

* ``aten_conv_nobias``: ``F.conv2d`` without its bias (cuDNN through ATen, benchmark mode): the speed to reach;
* ``norm_conv_compiled``: ``group_norm_by_size`` (statistics pass, normalise + SiLU pass) then the convolution,
  compiled by inductor: what the fast path runs per resnet convolution, the row to beat;
* ``graph_conv``: the convolution alone as a cuDNN graph (is the graph path as fast as ATen's?);
* ``graph_conv_stats``: convolution + bias + ``genstats`` (the statistics from the epilogue);
* ``graph_norm_conv``: scale + shift + swish on the input, convolution + bias (the normalisation in the prologue);
* ``graph_chain``: both: a layer inside a chain of fused layers (scale and shift from the sums the previous layer
  handed over, then the graph);
* ``graph_chain_residual``: the same with the resnet's skip tensor added in the epilogue before ``genstats`` (a
  resnet's second convolution);
* ``graph_chain_relu``: ``graph_chain`` with ReLU instead of SiLU: cuDNN's documented BatchNorm-fusion pattern,
  a different function, measured only to tell an unsupported SiLU from an unsupported pattern.

GroupNorm's scale and shift are per (sample, channel) and its statistics per sample, while ``genstats`` sums over
the batch too: at batch 1 the graphs compute exactly the GroupNorm layer; at a larger batch the script runs the
batch-1 graph once per sample (``*_per_sample`` rows, exact) and the whole batch at once with per-(sample, channel)
scale and shift (the ``graph_*`` rows; their sums cover the batch: timing only, flagged ``stats_over_batch``).

Measured (session 26, one NVIDIA H100, cuDNN 9.19; ``docs/difix_fast_path.md``): cuDNN builds no engine for any
graph with a prologue (SiLU or ReLU, bf16 or fp16, float32 or input-dtype scale and shift); the epilogue graphs run,
but ``genstats`` costs about what the statistics pass it would replace costs. The fast path does not use them.

Per graph: which heuristics' plans built (``--max-plans`` of them timed, the fastest kept, its engine name
recorded), or the error cuDNN gave. Per row: ms per call (CUDA events, median of ``--iters`` after warm-up),
TFLOP/s of the convolution, the max / mean abs difference from a float32 (no TF32) reference, and for graphs with
statistics the largest relative error of their sums. Random weights: speed and numerics, not quality.

The GPU machine needs the frontend's wheel (``nvidia-cudnn-frontend``, Python bindings only; they load the libcudnn
that PyTorch ships): ``scripts/prepare_device_extras.sh`` puts it in ``.device/kernels``; ``gpu_session.sh
cudnnconv`` installs it. Without a GPU (``--smoke-cpu``) the script checks the float32 reference layer the graphs
are compared with against ``F.group_norm`` + SiLU + ``F.conv2d`` (and, if the package imports, that every graph
passes cuDNN's validation), not cuDNN.

GPU:  python scripts/bench_cudnn_conv.py --out $OUT/bench_cudnn_conv.json --compile-cache-dir /tmp/difix_compile_cache
CPU check:  python scripts/bench_cudnn_conv.py --smoke-cpu --out /tmp/cudnn_conv.json
"""
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple

import tyro

from kernel_bench import (  # the kernel benchmarks' helpers (scripts/kernel_bench.py)
    KernelBenchOptions,
    group_norm_scale_shift,
    kernel_bench_device,
    kernel_bench_header,
    measure_variant,
    median_ms,
    parse_shape,
)

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GRAPHS = {  # name -> (prologue activation or None, bias, genstats, residual)
    "graph_conv": (None, False, False, False),
    "graph_conv_stats": (None, True, True, False),
    "graph_norm_conv": ("swish", True, False, False),
    "graph_chain": ("swish", True, True, False),
    "graph_chain_residual": ("swish", True, True, True),
    "graph_chain_relu": ("relu", True, True, False),
}


def reference_layer(x, scale, shift, weight, bias, activation: Optional[str], residual=None):
    """What a fused graph computes, in float32 without TF32: ``activation(x * scale + shift)`` per (sample, channel)
    (zero padding applied after it, as the convolution pads its input), the 3x3 convolution, its bias, the residual;
    and the output's per-channel sums and sums of squares over (H, W), per sample ([N, C] each)."""
    import torch
    import torch.nn.functional as F

    allow = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        v = x.float()
        if scale is not None:
            v = v * scale.float()[:, :, None, None] + shift.float()[:, :, None, None]
        if activation == "swish":
            v = F.silu(v)
        elif activation == "relu":
            v = F.relu(v)
        y = F.conv2d(v, weight.float(), bias.float() if bias is not None else None, padding=1)
        if residual is not None:
            y = y + residual.float()
        return y, y.sum((2, 3)), (y * y).sum((2, 3))
    finally:
        torch.backends.cudnn.allow_tf32 = allow


def channels_last_strides(c: int, h: int, w: int) -> List[int]:
    """Strides of an [N, C, H, W] tensor in channels_last (any N)."""
    return [c * h * w, 1, w * c, c]


class CudnnLayer:
    """One fused layer as a cuDNN operation graph for fixed shapes: ``layer.run(layer.pack(x, weight, bias, scale,
    shift, residual))`` writes ``layer.out`` (channels_last, the input's dtype) and, if the graph has ``genstats``,
    ``layer.sums`` (sum and sum of squares, [1, C, 1, 1] float32; zeroed before each call, not assumed overwritten). The
    first ``max_plans`` plans the heuristics offer are built; :meth:`autotune` keeps the fastest. Raises whatever
    cuDNN raises when no engine supports the graph."""

    def __init__(self, handle, x, weight, activation: Optional[str], bias: bool, stats: bool, residual: bool,
                 heuristics: Tuple[str, ...] = ("A", "B", "FALLBACK"), max_plans: int = 6, build: bool = True,
                 affine_in_input_dtype: bool = False):
        import cudnn
        import torch

        n, _, h, w = x.shape
        c_out = weight.shape[0]
        io = {torch.bfloat16: cudnn.data_type.BFLOAT16, torch.float16: cudnn.data_type.HALF,
              torch.float32: cudnn.data_type.FLOAT}[x.dtype]
        self.handle, self.stats = handle, stats
        options = {} if handle is None else {"handle": handle}  # no handle: validation only (no GPU needed)
        g = cudnn.pygraph(io_data_type=io, intermediate_data_type=cudnn.data_type.FLOAT,
                          compute_data_type=cudnn.data_type.FLOAT, **options)
        self.graph = g
        self.x_t = g.tensor(name="x", dim=list(x.shape), stride=list(x.stride()), data_type=io)
        self.w_t = g.tensor(name="w", dim=list(weight.shape), stride=list(weight.stride()), data_type=io)
        per = [n, x.shape[1], 1, 1]  # GroupNorm's scale and shift: per (sample, channel), float32 or x's dtype
        affine = io if affine_in_input_dtype else cudnn.data_type.FLOAT
        self.scale_t = self.shift_t = self.bias_t = self.res_t = None
        image = self.x_t
        if activation is not None:
            self.scale_t = g.tensor(name="scale", dim=per, stride=[per[1], 1, per[1], per[1]], data_type=affine)
            self.shift_t = g.tensor(name="shift", dim=per, stride=[per[1], 1, per[1], per[1]], data_type=affine)
            image = g.scale(input=image, scale=self.scale_t, name="gn_scale")
            image = g.bias(input=image, bias=self.shift_t, name="gn_shift")
            image = g.swish(input=image, name="silu") if activation == "swish" else g.relu(input=image, name="relu")
        y = g.conv_fprop(image=image, weight=self.w_t, padding=[1, 1], stride=[1, 1], dilation=[1, 1],
                         compute_data_type=cudnn.data_type.FLOAT, name="conv")
        if bias:
            self.bias_t = g.tensor(name="bias", dim=[1, c_out, 1, 1], stride=[c_out, 1, c_out, c_out], data_type=io)
            y = g.bias(input=y, bias=self.bias_t, name="conv_bias")
        if residual:
            self.res_t = g.tensor(name="residual", dim=[n, c_out, h, w], stride=channels_last_strides(c_out, h, w),
                                  data_type=io)
            y = g.add(a=y, b=self.res_t, name="skip")
        y.set_output(True).set_data_type(io).set_dim([n, c_out, h, w]).set_stride(
            channels_last_strides(c_out, h, w))
        self.y_t = y
        self.sum_t = self.sq_t = None
        if stats:
            self.sum_t, self.sq_t = g.genstats(input=y, name="genstats")
            for t in (self.sum_t, self.sq_t):
                t.set_output(True).set_data_type(cudnn.data_type.FLOAT).set_dim([1, c_out, 1, 1]).set_stride(
                    [c_out, 1, c_out, c_out])
        g.validate()
        self.plan_names: Dict[int, str] = {}
        self.plan_index = 0
        self.heuristics: List[str] = []
        if not build:
            return
        g.build_operation_graph()
        modes = [getattr(cudnn.heur_mode, m) for m in heuristics]
        try:
            g.create_execution_plans(modes)
            self.heuristics = list(heuristics)
        except Exception:  # noqa: BLE001  (some modes decline some graphs: fall back to A + FALLBACK)
            g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
            self.heuristics = ["A", "FALLBACK"]
        g.check_support()
        # Build the first max_plans candidates one by one (runtime-compiled engines take seconds each to build):
        # those that build are timed by autotune(), those that do not are recorded with cuDNN's reason.
        self.plans: List[int] = []
        self.plan_errors: Dict[str, str] = {}
        for i in range(min(g.get_execution_plan_count(), max_plans)):
            try:
                g.build_plan_at_index(i)
                self.plans.append(i)
            except Exception as err:  # noqa: BLE001
                self.plan_errors[str(i)] = _error(err)
        if not self.plans:
            raise RuntimeError(f"none of {g.get_execution_plan_count()} plans built: {self.plan_errors}")
        self.plan_names = {i: g.get_plan_name_at_index(i) for i in self.plans}
        sizes = [g.get_workspace_size_plan_at_index(i) for i in self.plans]
        self.workspace = torch.empty(max(max(sizes), 1), device=x.device, dtype=torch.uint8)
        self.out = torch.empty((n, c_out, h, w), device=x.device, dtype=x.dtype).contiguous(
            memory_format=torch.channels_last)
        self.sums = (torch.zeros(1, c_out, 1, 1, device=x.device, dtype=torch.float32),
                     torch.zeros(1, c_out, 1, 1, device=x.device, dtype=torch.float32)) if stats else None

    def pack(self, x, weight, bias=None, scale=None, shift=None, residual=None, out=None, sums=None) -> Dict:
        pack = {self.x_t: x, self.w_t: weight, self.y_t: self.out if out is None else out}
        if self.scale_t is not None:
            pack[self.scale_t], pack[self.shift_t] = scale, shift
        if self.bias_t is not None:
            pack[self.bias_t] = bias
        if self.res_t is not None:
            pack[self.res_t] = residual
        if self.stats:
            sums = self.sums if sums is None else sums
            pack[self.sum_t], pack[self.sq_t] = sums
        return pack

    def run(self, pack: Dict, index: Optional[int] = None) -> None:
        import cudnn
        import torch

        cudnn.set_stream(handle=self.handle, stream=torch.cuda.current_stream().cuda_stream)
        if self.stats:
            pack[self.sum_t].zero_()
            pack[self.sq_t].zero_()
        self.graph.execute_plan_at_index(pack, self.workspace, index=self.plan_index if index is None else index,
                                         handle=self.handle)

    def autotune(self, pack: Dict, iters: int = 5) -> List[dict]:
        """Time every built plan on ``pack`` and keep the fastest; -> one row per plan."""
        rows = []
        for i in self.plans:
            try:
                ms = median_ms(lambda: self.run(pack, i), (), 2, iters, True)
                rows.append({"index": i, "plan": self.plan_names[i], "ms": round(ms, 4)})
            except Exception as err:  # noqa: BLE001  (a plan that fails to run is recorded and skipped)
                rows.append({"index": i, "plan": self.plan_names[i], "error": _error(err)})
        timed = [(r["ms"], r["index"]) for r in rows if "ms" in r]
        if not timed:
            raise RuntimeError(f"no plan of {len(self.plans)} ran: {rows[:3]}")
        self.plan_index = min(timed)[1]
        return rows


@dataclass
class CudnnConvBenchConfig(KernelBenchOptions):
    """Options of the cuDNN fused-convolution benchmark."""

    shapes: List[str] = field(default_factory=lambda: ["128x576x1024", "256x288x512", "512x144x256"])
    """convolution inputs CxHxW (C in = C out; the VAE decoder's resnets at 576x1024, largest first)"""
    batches: List[int] = field(default_factory=lambda: [1, 8])
    """batch sizes"""
    graphs: List[str] = field(default_factory=lambda: list(GRAPHS))
    """which cuDNN graphs to build (of: graph_conv graph_conv_stats graph_norm_conv graph_chain graph_chain_residual
    graph_chain_relu)"""
    max_plans: int = 6
    """plans timed per graph (the fastest is kept)"""
    affine_dtype: Literal["float32", "input"] = "float32"
    """dtype of the prologue's scale and shift tensors: float32, or the input's (cuDNN's documented BatchNorm-fusion
    samples use the input's)"""
    smoke_cpu: bool = False
    """CPU check: the float32 reference layer against F.group_norm + SiLU + F.conv2d, batch 2, one 32x6x10 shape,
    and each graph validated by the frontend if it imports; no cuDNN execution"""


def _error(err: Exception) -> str:
    text = str(err).splitlines()[0][:400] if str(err) else ""
    try:
        import cudnn

        last = cudnn.get_last_error_string()
        if last:
            text += f" | cudnn: {last[:400]}"
    except Exception:  # noqa: BLE001
        pass
    return f"{type(err).__name__}: {text}"


def main(argv=None) -> dict:
    args = tyro.cli(CudnnConvBenchConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    shapes = [parse_shape(s) for s in args.shapes]
    unknown = [g for g in args.graphs if g not in GRAPHS]
    if unknown:
        raise SystemExit(f"error: --graphs {' '.join(unknown)}: not one of {' '.join(GRAPHS)}")
    if not args.batches or min(args.batches) < 1:
        raise SystemExit("error: --batches must be positive")
    if args.max_plans < 1:
        raise SystemExit("error: --max-plans must be at least 1")
    if args.smoke_cpu:
        args.batches, shapes, args.dtype = [2], [(32, 6, 10)], "float32"
    cuda, dtype, device = kernel_bench_device(args.smoke_cpu, args.dtype, args.compile_cache_dir)
    import torch
    import torch.nn.functional as F

    from difix_ns.fixers.group_norm import group_norm_by_size

    torch.backends.cudnn.benchmark = True
    groups, eps = (32 if not args.smoke_cpu else 8), 1e-6
    result = kernel_bench_header("GroupNorm + SiLU + 3x3 convolution (SD VAE resnet shapes) as fused cuDNN graphs "
                                 "against inductor + cuDNN (scripts/bench_cudnn_conv.py); random weights", cuda, args,
                                 cpu_run="CPU check of the reference layer")
    try:
        import cudnn

        result["cudnn_frontend"] = getattr(cudnn, "__version__", "unknown")
        result["cudnn_backend"] = cudnn.backend_version_string()
    except Exception as err:  # noqa: BLE001  (recorded: the baseline rows still run)
        cudnn = None
        result["cudnn_frontend"] = f"not importable: {_error(err)}"
    result["torch_cudnn"] = torch.backends.cudnn.version() if cuda else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    handle = cudnn.create_handle() if (cudnn is not None and cuda) else None

    def compiled(fn):
        return torch.compile(fn, dynamic=False) if cuda else fn

    def norm_conv(x, w, b, gw, gb):
        return F.conv2d(group_norm_by_size(x, groups, gw, gb, eps, silu=True), w, b, padding=1)

    norm_conv_c, scale_shift_c = compiled(norm_conv), compiled(group_norm_scale_shift)
    affine_in_input = args.affine_dtype == "input"
    result["affine_dtype"] = args.affine_dtype
    gen = torch.Generator(device="cpu").manual_seed(0)
    for c, h, w in shapes:
        for batch in args.batches:
            x = (torch.randn(batch, c, h, w, generator=gen) * 2 + 0.5).to(device, dtype)
            x = x.contiguous(memory_format=torch.channels_last)
            skip = torch.randn(batch, c, h, w, generator=gen).to(device, dtype).contiguous(
                memory_format=torch.channels_last)
            weight = (torch.randn(c, c, 3, 3, generator=gen) * (9 * c) ** -0.5).to(device, dtype)
            weight = weight.contiguous(memory_format=torch.channels_last)
            bias = (torch.randn(c, generator=gen) * 0.1).to(device, dtype)
            gn_w = (torch.rand(c, generator=gen) + 0.5).to(device, dtype)
            gn_b = (torch.randn(c, generator=gen) * 0.1).to(device, dtype)
            with torch.no_grad():
                xf = x.float()
                handed_over = (xf.sum((2, 3)), (xf * xf).sum((2, 3)))  # what a previous fused layer summed
                scale, shift = group_norm_scale_shift(*handed_over, h * w, groups, gn_w, gn_b, eps)
                del xf
                references = {
                    None: reference_layer(x, None, None, weight, None, None),
                    "bias": reference_layer(x, None, None, weight, bias, None),
                    "swish": reference_layer(x, scale, shift, weight, bias, "swish"),
                    "swish_res": reference_layer(x, scale, shift, weight, bias, "swish", skip),
                    "relu": reference_layer(x, scale, shift, weight, bias, "relu"),
                }
            flop = 2 * batch * c * c * 9 * h * w

            def refresh_scale_shift(scale_out, shift_out, handed_over=handed_over, h=h, w=w, gn_w=gn_w, gn_b=gn_b):
                new_scale, new_shift = scale_shift_c(*handed_over, h * w, groups, gn_w, gn_b, eps)
                scale_out.copy_(new_scale.view(scale_out.shape))
                shift_out.copy_(new_shift.view(shift_out.shape))
            rows: Dict[str, dict] = {}
            key = f"{c}x{h}x{w}_b{batch}"
            result["shapes"][key] = rows

            def timed(name, fn, inputs, target, sums_of=None, want_sums=None):
                row = measure_variant(fn, inputs, target, args.warmup, args.iters, cuda) if cuda else {}
                if "ms" in row:
                    row["tflop_per_s"] = round(flop / (row["ms"] / 1000) / 1e12, 1)
                if sums_of is not None and want_sums is not None and "ms" in row:
                    errs = [((got.reshape(want.shape) - want).abs().max() / want.abs().max().clamp_min(1e-12)).item()
                            for got, want in zip(sums_of(), want_sums)]
                    row["sums_max_rel_err"] = max(errs)
                rows.setdefault(name, {}).update(row)
                print(f"[cudnn_conv] {key} {name}: {rows[name]}", flush=True)
                args.out.write_text(json.dumps(result, indent=2))

            if args.smoke_cpu:  # the reference layer is GroupNorm + SiLU + convolution
                want = F.conv2d(F.silu(F.group_norm(x.float(), groups, gn_w.float(), gn_b.float(), eps)),
                                weight.float(), bias.float(), padding=1)
                diff = (references["swish"][0] - want).abs().max().item()
                rows["reference_layer"] = {"max_abs_diff_vs_group_norm_silu_conv": diff}
            else:
                timed("aten_conv_nobias", lambda x, w: F.conv2d(x, w, padding=1), (x, weight), references[None][0])
                timed("norm_conv_compiled", norm_conv_c, (x, weight, bias, gn_w, gn_b), references["swish"][0])

            for name in args.graphs:
                activation, has_bias, stats, residual = GRAPHS[name]
                ref_key = ("swish_res" if residual else activation) if activation else ("bias" if has_bias else None)
                target, _, _ = references[ref_key]
                want_all = tuple(s.sum(0) for s in references[ref_key][1:])  # genstats sums over the batch too
                affine_dtype = dtype if affine_in_input else torch.float32
                inputs = dict(bias=bias.view(1, c, 1, 1) if has_bias else None,
                              scale=scale.view(batch, c, 1, 1).to(affine_dtype).contiguous() if activation else None,
                              shift=shift.view(batch, c, 1, 1).to(affine_dtype).contiguous() if activation else None,
                              residual=skip if residual else None)
                try:
                    layer = CudnnLayer(handle, x, weight, activation, has_bias, stats, residual,
                                       max_plans=args.max_plans, build=cuda, affine_in_input_dtype=affine_in_input)
                except Exception as err:  # noqa: BLE001  (unsupported graphs are a result, not a failure)
                    rows[name] = {"error": _error(err)}
                    print(f"[cudnn_conv] {key} {name}: {rows[name]}", flush=True)
                    continue
                if not cuda:
                    rows[name] = {"validated": True}
                    continue
                try:
                    pack = layer.pack(x, weight, **inputs)
                    plans = layer.autotune(pack)
                except Exception as err:  # noqa: BLE001
                    rows[name] = {"error": _error(err), "plans": list(layer.plan_names.values())}
                    print(f"[cudnn_conv] {key} {name}: {rows[name]}", flush=True)
                    continue
                rows[name] = {"heuristics": layer.heuristics, "plan_count": layer.graph.get_execution_plan_count(),
                              "plans": plans, "plans_not_built": layer.plan_errors,
                              "chosen": layer.plan_names[layer.plan_index]}
                if batch > 1 and activation:
                    rows[name]["stats_over_batch"] = stats

                def fused(*_, layer=layer, pack=pack, inputs=inputs):
                    if inputs["scale"] is not None:  # this layer's scale and shift from the sums handed over
                        refresh_scale_shift(inputs["scale"], inputs["shift"])
                    layer.run(pack)
                    return layer.out

                def layer_sums(layer=layer):
                    return layer.sums

                timed(name, fused, (), target, layer_sums if stats else None, want_all if stats else None)
                if batch > 1 and stats:  # exact GroupNorm statistics: the batch-1 graph once per sample
                    try:
                        one = CudnnLayer(handle, x[:1], weight, activation, has_bias, stats, residual,
                                         max_plans=args.max_plans, affine_in_input_dtype=affine_in_input)
                        packs = []
                        outs = torch.empty_like(x)
                        sums = torch.zeros(2, batch, c, device=device, dtype=torch.float32)
                        for i in range(batch):
                            per_sample = {k: (v[i:i + 1] if k in ("scale", "shift", "residual") and v is not None
                                              else v) for k, v in inputs.items()}
                            packs.append(one.pack(x[i:i + 1], weight, out=outs[i:i + 1],
                                                  sums=(sums[0, i].view(1, c, 1, 1), sums[1, i].view(1, c, 1, 1)),
                                                  **per_sample))
                        one.autotune(packs[0])
                    except Exception as err:  # noqa: BLE001
                        rows[f"{name}_per_sample"] = {"error": _error(err)}
                        continue

                    def per_sample_run(*_, one=one, packs=packs, outs=outs, inputs=inputs):
                        if inputs["scale"] is not None:
                            refresh_scale_shift(inputs["scale"], inputs["shift"])
                        for p in packs:
                            one.run(p)
                        return outs

                    rows[f"{name}_per_sample"] = {"chosen": one.plan_names[one.plan_index]}
                    per_sample_sums = references[ref_key][1:]
                    timed(f"{name}_per_sample", per_sample_run, (), target,
                          lambda sums=sums: (sums[0], sums[1]), per_sample_sums)
            if "ms" in rows.get("norm_conv_compiled", {}) and "ms" in rows.get("graph_chain", {}):
                rows["chain_saving_ms"] = round(rows["norm_conv_compiled"]["ms"] - rows["graph_chain"]["ms"], 4)
            args.out.write_text(json.dumps(result, indent=2))
            del x, skip, weight, references
            if cuda:
                torch.cuda.empty_cache()
    if handle is not None:
        cudnn.destroy_handle(handle)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

"""The fast path's kernel benchmarks and the profiler's kernel classes, on the CPU (plumbing: tiny shapes, no
compile; the GPU numbers are in docs/gpu_results/bench_groupnorm_h100.json and bench_wide_attention_h100.json)."""
import json
from pathlib import Path

import pytest
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]



def test_groupnorm_bench_smoke_compares_formulations(tmp_path):
    out = tmp_path / "gn.json"
    load_script("bench_groupnorm").main(["--smoke-cpu", "--out", str(out)])
    rows = json.loads(out.read_text())["shapes"]["16x8x12"]
    assert set(rows) == {"eager", "eager_contiguous", "channel_stats_eager", "channel_sums_eager"}
    assert all(row["ms"] > 0 and row["max_abs_diff_vs_fp32"] < 1e-5 for row in rows.values())


def test_groupnorm_bench_cuda_graphs_need_a_gpu(tmp_path):
    out = tmp_path / "gn.json"
    with pytest.raises(SystemExit, match="--cuda-graphs needs a GPU"):
        load_script("bench_groupnorm").main(["--smoke-cpu", "--cuda-graphs", "--out", str(out)])
    with pytest.raises(ValueError, match="CUDA graphs need a GPU"):
        load_script("kernel_bench").median_ms(lambda: None, (), 1, 1, cuda=False, graphs=True)
    assert not out.exists()


def test_wide_attention_bench_smoke_compares_sdpa_and_matmuls(tmp_path):
    out = tmp_path / "attn.json"
    load_script("bench_wide_attention").main(["--smoke-cpu", "--out", str(out)])
    rows = json.loads(out.read_text())["batches"]["2"]
    assert set(rows) == {"sdpa", "matmul_eager"}
    assert all(row["ms"] > 0 and row["max_abs_diff_vs_fp32"] < 1e-5 for row in rows.values())


def test_wide_attention_bench_rejects_bad_sizes(tmp_path):
    out = tmp_path / "attn.json"
    with pytest.raises(SystemExit, match="must be positive"):
        load_script("bench_wide_attention").main(["--out", str(out), "--batches", "0"])
    assert not out.exists()


def test_upsample_conv_bench_smoke_compares_formulations(tmp_path):
    out = tmp_path / "up.json"
    load_script("bench_upsample_conv").main(["--smoke-cpu", "--out", str(out)])
    rows = json.loads(out.read_text())["shapes"]["32x6x10_b2"]
    assert set(rows) == {"eager", "stock_eager", "phases_eager", "stock_norm_eager", "phases_norm_eager"}
    assert all(row["ms"] > 0 and row["max_abs_diff_vs_fp32"] < 1e-4 for row in rows.values())


def test_upsample_conv_bench_rejects_channels_groupnorm_cannot_split(tmp_path):
    out = tmp_path / "up.json"
    with pytest.raises(SystemExit, match="multiple of 32"):
        load_script("bench_upsample_conv").main(["--out", str(out), "--shapes", "48x8x8"])
    assert not out.exists()


def test_bench_difix_smoke_compile_needs_the_cpu_smoke_run():
    with pytest.raises(SystemExit, match="--smoke-compile needs --smoke-cpu"):
        load_script("bench_difix").parse_args(["--smoke-compile"])
    args = load_script("bench_difix").parse_args(["--smoke-cpu", "--smoke-compile"])
    assert (args.batches, args.refs, args.fast_dtypes) == ([1], [0], ["float32"])  # one shape: minutes on a CPU


@pytest.mark.parametrize("pair, message", [
    ("combo_kernelz=True", "has no setting 'combo_kernelz'"),
    ("combo_kernels=1", "combo_kernels takes a bool"),
    ("combo_kernels", "expected NAME=VALUE"),
])
def test_bench_difix_inductor_settings_are_checked_before_anything_runs(pair, message):
    with pytest.raises(SystemExit, match=message):
        load_script("bench_difix").parse_args(["--inductor", pair])


def test_bench_difix_inductor_settings_reach_inductor_and_the_json(tmp_path):
    import torch._inductor.config as inductor_config

    before = inductor_config.max_fusion_size
    out = tmp_path / "bench_difix.json"
    try:
        load_script("bench_difix").main(["--smoke-cpu", "--no-anchor", "--no-eager", "--refs", "0",
                                         "--inductor", "max_fusion_size=32", "--out", str(out)])
        assert inductor_config.max_fusion_size == 32
    finally:
        inductor_config.max_fusion_size = before
    assert json.loads(out.read_text())["inductor_settings"] == {"max_fusion_size": 32}


def test_bench_difix_smoke_rows_and_where_a_fast_call_goes(tmp_path):
    """The CPU smoke run writes every section the README's #12 table reads (anchor, eager, fast: batch x references,
    the fast-vs-eager differences) and splits each fast ``fix`` call: the compiled step alone, ``fix`` with the
    references encoded beforehand (V=1), and the glue (``fix`` minus the step)."""
    out = tmp_path / "bench_difix.json"
    load_script("bench_difix").main(["--smoke-cpu", "--out", str(out)])
    result = json.loads(out.read_text())
    assert "random" in result["note"].lower()
    names = {e["name"] for section in ("anchor", "eager", "fast") for e in result[section]}
    assert {"anchor_float32_b1", "eager_float32_b1_v1_uncached", "fast_float32_b1_v0", "fast_float32_b2_v1"} <= names
    for row in result["fast"]:
        assert "error" not in row, row
        assert row["step_ms_per_frame"] > 0 and row["output_finite"]
        assert row["glue_ms_per_frame"] == pytest.approx(row["ms_per_frame"] - row["step_ms_per_frame"], abs=0.011)
        assert ("fix_encoded_refs_ms_per_frame" in row) == (row["refs"] > 0)
    assert set(result["output_differences_on_0_1"]) == {"fast_vs_eager_float32_v0", "fast_vs_eager_float32_v1"}


@pytest.mark.parametrize("name, cls", [
    ("triton_red_fused__to_copy_var_mean_3", "normalization"),  # per-channel statistics (group_norm.py)
    ("triton_poi_fused__to_copy__unsafe_view_add_clone_expand_mean_mul_neg_pow_rsqrt_silu_sub_var_mean_view_58",
     "normalization"),
    ("triton_poi_fused__to_copy__unsafe_view_add_clone_expand_mean_mul_neg_rsqrt_silu_view_35", "elementwise"),
    ("triton_red_fused__softmax__to_copy_amax_mul_sub_9", "elementwise"),
    ("triton_red_fused__to_copy_convolution_mul_sub_sum_12", "normalization"),  # channel_sums' per-channel sums
    ("triton_red_fused__softmax__to_copy_amax_exp_sum_4", "elementwise"),
    ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128", "convolution"),
    ("nvjet_sm90_tss_192x192_64x4_2x1_v_bz_coopB_TNN", "gemm"),
    ("void at::native::(anonymous namespace)::RowwiseMomentsCUDAKernel<float>", "normalization"),
])
def test_profiler_kernel_classes(name, cls):
    assert load_script("profile_difix").kernel_class(name) == cls


def test_unet_attention_bench_smoke_sums_levels_per_frame(tmp_path):
    out = tmp_path / "unet_attn.json"
    result = load_script("bench_unet_attention").main(["--smoke-cpu", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["per_frame_ms"] == result["per_frame_ms"]
    assert set(saved["rows"]) == {f"v{v}_b1_{level}" for v in (1, 2) for level in ("1/8", "1/16", "1/32", "1/64")}
    # tokens per view at each level, (64/8 x 128/8) / 4^k; with a reference each attention sees twice as many
    assert [lvl["tokens"] for lvl in saved["levels"]] == [128, 32, 8, 2]
    for name, rows in saved["rows"].items():
        # with a reference, the 1/8 level also times the last layer with the degraded view's queries only
        extra = {"default_render_queries_only"} if name == "v2_b1_1/8" else set()
        assert set(rows) == {"default", "math"} | extra
        assert all(row["ms"] > 0 and row["max_abs_diff_vs_fp32"] < 1e-5 for row in rows.values())
    assert all(ms > 0 for kinds in saved["per_frame_ms"].values() for ms in kinds.values())
    assert set(saved["per_frame_ms_render_queries_last"]) == {"v2_b1"}
    pruned = saved["rows"]["v2_b1_1/8"]["default_render_queries_only"]["ms"]
    full = saved["rows"]["v2_b1_1/8"]["default"]["ms"]
    expected = saved["per_frame_ms"]["v2_b1"]["default"] - full + pruned
    assert saved["per_frame_ms_render_queries_last"]["v2_b1"] == pytest.approx(expected, abs=2e-3)


def test_unet_attention_bench_rejects_sizes_the_unet_cannot_take(tmp_path):
    out = tmp_path / "unet_attn.json"
    with pytest.raises(SystemExit, match="multiples of 64"):
        load_script("bench_unet_attention").main(["--out", str(out), "--height", "576", "--width", "1000"])
    assert not out.exists()


def test_fused_conv_bench_kernel_matches_group_norm_silu_conv(tmp_path):
    """The hand-written Triton kernel of bench_fused_conv.py (run by Triton's interpreter on the CPU, float32): the
    convolution alone, with GroupNorm + SiLU in its prologue, and with its output's channel sums, against PyTorch."""
    import subprocess
    import sys

    out = tmp_path / "fc.json"
    command = [sys.executable, str(ROOT / "scripts" / "bench_fused_conv.py"), "--smoke-cpu", "--out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = result["shapes"]["32x6x10_b2"]
    assert set(rows) == {"cudnn_conv", "cudnn_conv_nobias", "norm_conv_compiled", "triton_conv", "triton_norm_conv",
                         "triton_norm_only", "triton_chain", "chain_saving_ms"}
    for name in ("triton_conv", "triton_norm_conv", "triton_norm_only", "triton_chain"):
        assert rows[name]["max_abs_diff_vs_fp32"] < 1e-4, (name, rows[name])
    assert rows["triton_chain"]["output_sums_max_rel_err"] < 1e-5
    assert "interpreter" in result["gpu"]


def test_fused_conv_bench_rejects_channels_the_kernel_cannot_tile(tmp_path):
    out = tmp_path / "fc.json"
    with pytest.raises(SystemExit, match="multiple of 64"):
        load_script("bench_fused_conv").main(["--out", str(out), "--shapes", "96x8x8"])
    assert not out.exists()


def test_cudnn_conv_bench_reference_layer_is_group_norm_silu_conv(tmp_path):
    """bench_cudnn_conv.py compares each fused cuDNN graph with a float32 layer built from the channel sums a previous
    layer hands over; on the CPU that layer must be GroupNorm + SiLU + convolution (+ the skip tensor), and every
    graph gets a row (validated by the frontend where it imports, else the import error), with nothing executed."""
    import torch
    import torch.nn.functional as F

    bench = load_script("bench_cudnn_conv")
    out = tmp_path / "cc.json"
    result = bench.main(["--smoke-cpu", "--out", str(out)])
    rows = json.loads(out.read_text())["shapes"]["32x6x10_b2"]
    assert rows["reference_layer"]["max_abs_diff_vs_group_norm_silu_conv"] < 1e-4
    assert set(rows) == {"reference_layer", *bench.GRAPHS}
    for name in bench.GRAPHS:
        assert rows[name] == {"validated": True} or "cudnn" in rows[name]["error"], rows[name]
    assert result["shapes"] == json.loads(out.read_text())["shapes"]

    gen = torch.Generator().manual_seed(1)
    x, skip = torch.randn(2, 8, 5, 7, generator=gen), torch.randn(2, 8, 5, 7, generator=gen)
    weight, bias = torch.randn(8, 8, 3, 3, generator=gen), torch.randn(8, generator=gen)
    gn_w, gn_b = torch.rand(8, generator=gen) + 0.5, torch.randn(8, generator=gen)
    sums = (x.sum((2, 3)), (x * x).sum((2, 3)))
    scale, shift = load_script("kernel_bench").group_norm_scale_shift(*sums, 35, 4, gn_w, gn_b, 1e-6)
    y, y_sums, y_sq = bench.reference_layer(x, scale, shift, weight, bias, "swish", skip)
    want = F.conv2d(F.silu(F.group_norm(x, 4, gn_w, gn_b, 1e-6)), weight, bias, padding=1) + skip
    assert torch.allclose(y, want, atol=1e-4)
    assert torch.allclose(y_sums, want.sum((2, 3)), atol=1e-3) and torch.allclose(y_sq, (want * want).sum((2, 3)))


def test_cudnn_conv_bench_rejects_unknown_graphs(tmp_path):
    out = tmp_path / "cc.json"
    with pytest.raises(SystemExit, match="--graphs graph_fast"):
        load_script("bench_cudnn_conv").main(["--smoke-cpu", "--out", str(out), "--graphs", "graph_fast"])
    assert not out.exists()

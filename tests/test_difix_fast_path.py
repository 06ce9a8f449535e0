"""DifixFixer's fast-path switches and reference-latent cache on CPU (tiny random-weight model).

The compiled CUDA path itself is exercised by scripts/bench_difix.py on a GPU; here: the switches fall back to the
unchanged eager path without CUDA, a failing fast path falls back with one warning, the fast step's plumbing
(reference latents, tail padding, x0 + decode) matches the eager step, and cached reference latents give outputs
bit-identical to recomputing them.
"""
from __future__ import annotations

import logging

import pytest
import torch

from difix_ns.fixer import DifixFixer
from difix_ns.fixers.reference_cache import ReferenceLatentCache
from difix_ns.testing import build_difix_pipeline


@pytest.fixture(scope="module")
def pipe():
    return build_difix_pipeline("tiny", reference_mixing=True, seed=0)


def _inputs(seed: int, batch: int = 2, views: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, 64, 88, generator=gen), torch.rand(batch, views, 3, 66, 88, generator=gen)


def test_compile_switch_without_cuda_stays_eager_and_unchanged(pipe, monkeypatch):
    import difix_ns.fixers.compiled as compiled

    def no_compile(*args, **kwargs):
        raise AssertionError("the fast path must not be built on CPU")

    monkeypatch.setattr(compiled, "CompiledDifixStep", no_compile)
    images, refs = _inputs(0)
    on = DifixFixer.from_pipeline(pipe, model_name="tiny", compile=True, compile_min_frames=0)
    off = DifixFixer.from_pipeline(pipe, model_name="tiny", compile=False)
    assert not on.compiled and not on.caches_references  # CPU: eager, references encoded with the render as before
    assert torch.equal(on.fix(images, refs), off.fix(images, refs))
    assert torch.equal(on.fix(images), off.fix(images))


def test_no_compile_cli_flag():
    from difix_ns.cli.common import ModelOptions
    from difix_ns.cli.tyro_style import parse

    assert parse(ModelOptions, []).compile is True
    assert parse(ModelOptions, ["--no-compile"]).compile is False
    assert parse(ModelOptions, ["--no_compile"]).compile is False


class _Broken:
    calls = 0

    def __call__(self, x, ref_latents=None):
        _Broken.calls += 1
        raise RuntimeError("inductor exploded\nlong traceback text")


class _BrokenReferenceEncoder(_Broken):
    def reference_encoder(self, size):
        def encode(x):
            _Broken.calls += 1
            raise RuntimeError("inductor exploded in the encoder\nlong traceback text")

        return encode


@pytest.mark.parametrize("broken", [_Broken, _BrokenReferenceEncoder], ids=["step", "reference_encoder"])
def test_failing_fast_path_warns_once_and_runs_eager(pipe, caplog, broken):
    images, refs = _inputs(1)
    fixer = DifixFixer.from_pipeline(pipe, model_name="tiny", cache_references=True)
    reference = DifixFixer.from_pipeline(pipe, model_name="tiny", cache_references=True, compile=False)
    _Broken.calls = 0
    fixer.set_fast_step(broken())
    with caplog.at_level(logging.WARNING):
        out = fixer.fix(images, refs)
        again = fixer.fix(images, refs)
    warnings = [r.getMessage() for r in caplog.records if "fast path failed" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "inductor exploded" in warnings[0]
    assert _Broken.calls == 1 and not fixer.compiled
    expected = reference.fix(images, refs)
    assert torch.equal(out, expected) and torch.equal(again, expected)


def test_fast_path_encodes_new_references_with_its_own_encoder_and_caches_them(pipe):
    from difix_ns.fixers.compiled import CompiledDifixStep

    images, refs = _inputs(4, batch=3, views=1)
    eager = DifixFixer.from_pipeline(pipe, model_name="tiny", cache_references=True, compile=False, batch_size=3)
    expected = eager.fix(images, refs)
    fast = DifixFixer.from_pipeline(pipe, model_name="tiny", cache_references=True, batch_size=3)
    step = CompiledDifixStep(pipe, 199, "remove degradation", cuda_graphs=False, compile=False)
    encoded = []
    original = step.encode_reference

    def spy(x):
        encoded.append(tuple(x.shape))
        return original(x)

    step.encode_reference = spy
    fast.set_fast_step(step)
    first = fast.fix(images, refs)
    # the step had not run with references at this size yet: they were encoded eagerly, and the step compiled their
    # encoder with itself (one warm-up view)
    assert encoded == [(1, 3, 64, 88)] and fast.reference_cache.misses == 3
    assert step.reference_encoder((64, 88)) is not None and step.reference_encoder((64, 96)) is None
    # from now on new references go through it, one view at a time, and are cached under its name
    second = fast.fix(images, refs.clone())
    assert encoded == [(1, 3, 64, 88)] * 4 and fast.reference_cache.misses == 6
    assert torch.allclose(first, expected, atol=1e-4) and torch.allclose(second, expected, atol=1e-4)
    assert torch.equal(fast.fix(images, refs.clone()), second) and fast.reference_cache.hits == 3 and len(encoded) == 4
    fast.clear_reference_cache()
    assert torch.equal(fast.fix(images, refs), second) and len(encoded) == 7  # recomputed: bit-identical
    # the fast path's latents are not handed out as the eager encoder's (the encoder is part of the key); eager in
    # the channels_last layout the step left equals the contiguous eager path up to rounding
    with fast.eager():
        assert torch.allclose(fast.fix(images, refs), expected, atol=1e-4) and fast.reference_cache.misses == 6
    with pytest.raises(ValueError, match="one view"):
        original(torch.zeros(2, 3, 64, 88))


def test_reference_latents_cached_are_bit_identical_to_recomputed(pipe):
    images, refs = _inputs(2, batch=3, views=2)
    fixer = DifixFixer.from_pipeline(pipe, model_name="tiny", cache_references=True, batch_size=2)
    first = fixer.fix(images, refs)  # 6 distinct reference views: all misses
    cache = fixer.reference_cache
    assert (cache.misses, cache.hits, len(cache)) == (6, 0, 6)
    second = fixer.fix(images, refs.clone())  # same content, new tensors: all hits
    assert cache.hits == 6 and torch.equal(first, second)
    fixer.clear_reference_cache()
    assert torch.equal(first, fixer.fix(images, refs)) and cache.misses == 6  # recomputed from scratch
    # The same step computed by hand: each reference resized and encoded alone, latents passed to restore().
    from difix_ns.diffusion.images import resize_tensor

    size = (64, 88)
    lat = torch.stack([
        torch.cat([pipe.encode_latents(resize_tensor(refs[b, v : v + 1], size) * 2 - 1) for v in range(2)])
        for b in range(3)
    ])
    by_hand = torch.cat([pipe.restore(images[i : i + 2] * 2 - 1, ref_latents=lat[i : i + 2]) for i in (0, 2)])
    assert torch.equal(first, ((by_hand + 1) / 2).clamp(0, 1))
    # Joint encoding (the cache-less path) computes the same function up to float rounding.
    joint = DifixFixer.from_pipeline(pipe, model_name="tiny", cache_references=False, batch_size=2)
    assert torch.allclose(first, joint.fix(images, refs), atol=1e-4)
    # A changed pixel is a different reference.
    changed = refs.clone()
    changed[0, 0, 0, 0, 0] += 0.25
    misses, hits = cache.misses, cache.hits
    fixer.fix(images[:1], changed[:1])
    assert (cache.misses, cache.hits) == (misses + 1, hits + 1)  # view 0a changed, view 0b did not


def test_fingerprints_do_not_depend_on_the_batch():
    views = torch.rand(4, 3, 16, 24)
    cache = ReferenceLatentCache(8)
    together = cache.fingerprints(views)
    assert together == [cache.fingerprints(views[i : i + 1])[0] for i in range(4)]
    assert len(set(together)) == 4
    assert cache.fingerprints(views.to(torch.bfloat16))[0] != together[0] or views.dtype == torch.bfloat16


def test_fast_step_plumbing_matches_the_eager_step():
    from difix_ns.fixers.compiled import CompiledDifixStep

    pipe = build_difix_pipeline("tiny", reference_mixing=True, seed=0)
    images, refs = _inputs(3, batch=3)
    eager = DifixFixer.from_pipeline(pipe, model_name="tiny", cache_references=True, compile=False, batch_size=2)
    expected = eager.fix(images, refs)
    expected_plain = eager.fix(images)
    fast = DifixFixer.from_pipeline(pipe, model_name="tiny", cache_references=True, batch_size=2)
    step = CompiledDifixStep(pipe, 199, "remove degradation", cuda_graphs=False, compile=False)
    calls = []
    original = step.__call__

    def spy(x, ref_latents=None):
        calls.append((tuple(x.shape), None if ref_latents is None else tuple(ref_latents.shape)))
        return original(x, ref_latents)

    fast.set_fast_step(spy)
    out = fast.fix(images, refs)
    # 3 images in chunks of 2: the tail chunk is padded to 2 so it reuses the full chunk's graph
    assert calls == [((2, 3, 64, 88), (2, 1, 4, 8, 11))] * 2
    assert out.shape == expected.shape and torch.allclose(out, expected, atol=1e-4)
    assert torch.allclose(fast.fix(images), expected_plain, atol=1e-4)
    with fast.eager():  # fix rounds: eager inside the block
        n = len(calls)
        assert torch.allclose(fast.fix(images[:1]), expected_plain[:1], atol=1e-4) and len(calls) == n


def test_fix_calls_do_not_walk_the_models_for_their_dtype_or_device(pipe, monkeypatch):
    """diffusers' ``ModelMixin.dtype`` / ``.device`` visit every submodule (1-2 ms of host time a call on the
    SD-Turbo-sized UNet): a frame must not pay them, on the fast path (with references looked up in the cache) or the
    eager one."""
    from diffusers.models.modeling_utils import ModelMixin

    from difix_ns.fixers.compiled import CompiledDifixStep

    images, refs = _inputs(7, batch=1)
    eager = DifixFixer.from_pipeline(pipe, model_name="tiny", cache_references=False, compile=False)
    fast = DifixFixer.from_pipeline(pipe, model_name="tiny", cache_references=True)
    fast.set_fast_step(CompiledDifixStep(pipe, 199, "remove degradation", cuda_graphs=False, compile=False))
    for fixer in (eager, fast):  # first calls: loading, prompt embedding, the references' encoding
        fixer.fix(images, refs)
    walks = []

    def counted(name: str) -> property:
        stock = getattr(ModelMixin, name)

        def read(model):
            walks.append((type(model).__name__, name))
            return stock.fget(model)

        return property(read)

    for name in ("dtype", "device"):
        monkeypatch.setattr(ModelMixin, name, counted(name))
    for fixer in (eager, fast):
        fixer.fix(images, refs)
        fixer.fix(images)
    assert walks == []
    assert pipe.model_dtype == pipe.unet.dtype and pipe.model_device == pipe.unet.device


def test_fix_rounds_do_not_autotune_cudnn_under_ns_train(pipe, monkeypatch):
    """ns-train turns cuDNN benchmarking on for the whole process; a round's few eager fixes use cuDNN's heuristics
    instead of benchmarking every new convolution shape, and the process setting is back afterwards."""
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)  # what importing nerfstudio.scripts.train does
    fixer = DifixFixer.from_pipeline(pipe, model_name="tiny")
    seen = []
    original = fixer.pipeline.restore

    def spy(*args, **kwargs):
        seen.append(torch.backends.cudnn.benchmark)
        return original(*args, **kwargs)

    monkeypatch.setattr(fixer.pipeline, "restore", spy)
    images, refs = _inputs(3, batch=1)
    with fixer.eager():
        fixer.fix(images, refs)
    assert seen == [False] and torch.backends.cudnn.benchmark is True
    with pytest.raises(RuntimeError, match="boom"), fixer.eager():  # restored on errors too
        raise RuntimeError("boom")
    assert torch.backends.cudnn.benchmark is True


def test_compile_cache_dir_defaults_to_the_user_cache(monkeypatch, tmp_path):
    from difix_ns.fixers.compiled import _inductor_default_dir, use_compile_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert use_compile_cache() == str(tmp_path / "difix_ns" / "torch_compile")
    if _inductor_default_dir() is not None:  # inductor's own /tmp default is replaced too
        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", _inductor_default_dir())
        assert use_compile_cache(str(tmp_path / "mine")) == str(tmp_path / "mine")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "user_choice"))  # a user's choice is kept
    assert use_compile_cache(str(tmp_path / "other")) == str(tmp_path / "user_choice")


@pytest.mark.parametrize("formulation", ["group_norm_from_channel_stats", "group_norm_from_channel_sums",
                                         "group_norm_by_size"])
@pytest.mark.parametrize("silu", [False, True])
def test_compiled_group_norm_formulations_are_group_norm(formulation, silu):
    """Both GroupNorm formulations of the fast path's compiled graphs compute F.group_norm (+SiLU) in either memory
    format, with or without affine parameters, on 3-d and 4-d inputs, and keep the input's dtype and layout."""
    import torch.nn.functional as F

    from difix_ns.fixers import group_norm as module

    group_norm = getattr(module, formulation)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 9, 13, generator=gen) * 3 + 5  # a large mean: E[x^2] - E[x]^2 would lose digits
    weight, bias = torch.rand(16, generator=gen) + 0.5, torch.randn(16, generator=gen)
    for affine in ((weight, bias), (None, None)):
        expected = F.group_norm(x.double(), 4, *(None if a is None else a.double() for a in affine), 1e-6)
        expected = F.silu(expected) if silu else expected
        for layout in (torch.contiguous_format, torch.channels_last):
            got = group_norm(x.contiguous(memory_format=layout), 4, *affine, 1e-6, silu=silu)
            assert got.dtype == x.dtype and got.is_contiguous(memory_format=layout)
            assert torch.allclose(got.double(), expected, atol=2e-5, rtol=0)
    tokens = x.flatten(2)  # [N, C, L]
    expected = F.group_norm(tokens.double(), 4, weight.double(), bias.double(), 1e-6)
    expected = F.silu(expected) if silu else expected
    assert torch.allclose(group_norm(tokens, 4, weight, bias, 1e-6, silu=silu).double(), expected, atol=2e-5, rtol=0)
    half = group_norm(x.bfloat16(), 4, weight.bfloat16(), bias.bfloat16(), silu=silu)
    expected = F.group_norm(x.bfloat16().double(), 4, weight.bfloat16().double(), bias.bfloat16().double(), 1e-6)
    expected = F.silu(expected) if silu else expected
    assert half.dtype == torch.bfloat16 and (half.double() - expected).abs().max() < 0.05  # bf16 output rounding
    with pytest.raises(ValueError, match="16 channels cannot be split into 5 groups"):
        group_norm(x, 5)


def test_auto_group_norm_takes_the_sums_from_its_size_threshold(monkeypatch):
    """compiled_group_norm="auto": inputs of CHANNEL_SUMS_MIN_ELEMENTS elements or more take the channel sums,
    smaller ones the channel statistics."""
    from difix_ns.fixers import group_norm as module

    taken = []
    for name in ("group_norm_from_channel_sums", "group_norm_from_channel_stats"):
        monkeypatch.setattr(module, name, lambda x, *args, name=name: taken.append(name) or x)
    monkeypatch.setattr(module, "CHANNEL_SUMS_MIN_ELEMENTS", 2 * 8 * 4 * 4)
    module.group_norm_by_size(torch.zeros(2, 8, 4, 4), 4)
    module.group_norm_by_size(torch.zeros(2, 8, 4, 3), 4)
    assert taken == ["group_norm_from_channel_sums", "group_norm_from_channel_stats"]


def test_channel_sums_keep_float32_precision_far_from_zero():
    """Activations whose mean is 1000x their spread: the shifted sums lose no more than the float32 input itself
    holds (unshifted sums of x and x^2 would lose the variance entirely)."""
    import torch.nn.functional as F

    from difix_ns.fixers.group_norm import group_norm_from_channel_sums

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 8, 64, 64, generator=gen) + 1000.0
    expected = F.group_norm(x.double(), 2, eps=1e-6)
    assert (group_norm_from_channel_sums(x, 2).double() - expected).abs().max() < 2e-4


def _compiling(monkeypatch):
    """Make ``torch.compiler.is_compiling()`` true: what the modules do inside a compiled graph, run eagerly."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)


def test_compiled_group_norm_switch_keeps_eager_results_and_state(monkeypatch):
    """use_compiled_group_norm changes only what compiled graphs compute: eager outputs stay bit-identical, the
    state dict is unchanged, traced calls match F.group_norm, and "stock" switches back."""
    from torch import nn

    from difix_ns.fixers.group_norm import (ChannelSumsGroupNorm, CompiledGroupNorm, GroupNormBySize,
                                            use_compiled_group_norm)

    gen = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.GroupNorm(4, 16, eps=1e-6), nn.SiLU(),
                          nn.Sequential(nn.GroupNorm(2, 16)))
    x = (torch.randn(2, 8, 7, 9, generator=gen) * 2 + 3).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        before, keys = model(x), list(model.state_dict())
        for kind, cls in (("channel_stats", CompiledGroupNorm), ("channel_sums", ChannelSumsGroupNorm),
                          ("auto", GroupNormBySize)):
            assert use_compiled_group_norm(model, kind) == 2
            assert all(type(m) is cls for m in (model[1], model[3][0]))
            assert torch.equal(model(x), before) and list(model.state_dict()) == keys
            with monkeypatch.context() as patch:
                _compiling(patch)
                assert torch.allclose(model(x), before, atol=2e-5, rtol=0)
        assert use_compiled_group_norm(model, "stock") == 2 and type(model[1]) is nn.GroupNorm
    with pytest.raises(ValueError, match="must be one of auto, channel_stats, channel_sums, stock; got 'triton'"):
        use_compiled_group_norm(model, "triton")


def test_wide_head_attention_only_for_heads_flash_cannot_take(monkeypatch):
    """The VAE-style attention (one 288-wide head) gets the two-GEMM processor, a 64-wide one keeps SDPA; eager calls
    are unchanged, traced calls equal SDPA up to float rounding, masked calls still use SDPA, and it can be undone."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    from difix_ns.fixers.wide_attention import WideHeadAttnProcessor, use_stock_attention, use_wide_head_attention

    torch.manual_seed(0)
    wide = Attention(query_dim=288, heads=1, dim_head=288, norm_num_groups=32, residual_connection=True, bias=True,
                     upcast_softmax=True, _from_deprecated_attn_block=True, eps=1e-6)
    narrow = Attention(query_dim=128, heads=2, dim_head=64)
    model = torch.nn.ModuleList([wide, narrow])
    for module in model:
        module.set_processor(AttnProcessor2_0())
    x = torch.randn(2, 288, 5, 7).contiguous(memory_format=torch.channels_last)
    tokens = torch.randn(2, 10, 288)
    mask = torch.ones(2, 1, 10, dtype=torch.bool)
    with torch.no_grad():
        before, masked = wide(x), wide(tokens, attention_mask=mask)
        assert use_wide_head_attention(model) == 1
        assert isinstance(wide.processor, WideHeadAttnProcessor) and type(narrow.processor) is AttnProcessor2_0
        assert torch.equal(wide(x), before)
        with monkeypatch.context() as patch:
            _compiling(patch)
            traced = wide(x)
            assert torch.equal(wide(tokens, attention_mask=mask), masked)  # masks: SDPA, as before
        assert traced.shape == before.shape and torch.allclose(traced, before, atol=1e-5, rtol=0)
        assert use_stock_attention(model) == 1 and type(wide.processor) is AttnProcessor2_0
        assert use_wide_head_attention(model, wider_than=0) == 2  # any width on request (the CPU compile check)
        assert use_stock_attention(model) == 2


def test_matmul_attention_is_softmax_attention():
    from difix_ns.fixers.wide_attention import matmul_attention

    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 3, 11, 40, generator=gen) for _ in range(3))
    expected = torch.softmax(q.double() @ k.double().transpose(-1, -2) * 0.3, -1) @ v.double()
    got = matmul_attention(q, k, v, 0.3)
    assert got.dtype == v.dtype and torch.allclose(got.double(), expected, atol=1e-5, rtol=0)


def test_upsample_conv_by_phases_is_the_upsample_then_conv():
    """The transposed-convolution formulation equals nearest 2x upsampling + a padded 3x3 convolution (float64:
    exact up to rounding), at odd sizes, with and without bias, keeping channels_last."""
    import torch.nn.functional as F

    from difix_ns.fixers.upsample_conv import upsample_conv_by_phases

    gen = torch.Generator().manual_seed(3)
    for (n, c, o, h, w), with_bias in (((2, 5, 7, 6, 9), True), ((1, 3, 4, 1, 2), False)):
        x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
        weight = torch.randn(o, c, 3, 3, generator=gen, dtype=torch.float64)
        bias = torch.randn(o, generator=gen, dtype=torch.float64) if with_bias else None
        expected = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)
        got = upsample_conv_by_phases(x, weight, bias)
        assert got.shape == (n, o, 2 * h, 2 * w) and torch.allclose(got, expected, atol=1e-12, rtol=0)
    x = torch.randn(2, 4, 5, 3, generator=gen).contiguous(memory_format=torch.channels_last)
    assert upsample_conv_by_phases(x, torch.randn(6, 4, 3, 3)).is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match=r"weight must be \[O, I, 3, 3\], got shape \(6, 4, 1, 1\)"):
        upsample_conv_by_phases(x, torch.randn(6, 4, 1, 1))


def test_transposed_kernel_sums_the_taps_elementwise():
    """Every 4x4 tap of the transposed kernel is the sum of the 3x3 taps it covers (exact in bf16 for weights whose
    sums are exact), in the weights' dtype, and is built without matrix products (in the compiled graphs it is
    recomputed at every call; as an einsum it became cuBLAS matrix-vector products costing ~1 ms a step)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from difix_ns.fixers.upsample_conv import transposed_kernel

    covers = ((2,), (1, 2), (0, 1), (0,))  # the 3x3 taps each of the 4 taps sums, along one axis
    gen = torch.Generator().manual_seed(6)
    weight = (torch.randint(-64, 65, (5, 3, 3, 3), generator=gen) / 16).to(torch.bfloat16)  # exact sums in bf16

    class Ops(TorchDispatchMode):
        seen: set = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.add(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    with Ops() as ops:
        kernel = transposed_kernel(weight)
    assert kernel.shape == (3, 5, 4, 4) and kernel.dtype == torch.bfloat16
    expected = torch.empty(3, 5, 4, 4, dtype=torch.float64)
    for y, rows in enumerate(covers):
        for x, cols in enumerate(covers):
            expected[:, :, y, x] = sum(weight[:, :, ky, kx].double() for ky in rows for kx in cols).T
    assert torch.equal(kernel.double(), expected)
    assert not ops.seen & {"aten.mm", "aten.bmm", "aten.addmm", "aten.matmul", "aten.einsum"}, ops.seen


def test_phase_upsample_switch_keeps_eager_results_and_state(monkeypatch):
    """use_phase_upsample changes only what compiled graphs compute, and only for the exact pattern: eager outputs
    stay bit-identical, the state dict is unchanged, traced calls match the stock pair, a transposed-convolution
    upsampler and a size other than 2x run stock, and "stock" switches back."""
    import torch.nn.functional as F
    from diffusers.models.upsampling import Upsample2D

    from difix_ns.fixers.upsample_conv import CompiledUpsample2D, use_phase_upsample

    torch.manual_seed(4)
    plain, transposed = Upsample2D(8, use_conv=True), Upsample2D(8, use_conv_transpose=True)
    model = torch.nn.ModuleList([plain, transposed])
    x = torch.randn(2, 8, 5, 6).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        before, before_t, keys = plain(x), transposed(x), list(model.state_dict())
        assert use_phase_upsample(model, "phases") == 2 and type(plain) is type(transposed) is CompiledUpsample2D
        assert torch.equal(plain(x), before) and list(model.state_dict()) == keys
        with monkeypatch.context() as patch:
            _compiling(patch)
            traced = plain(x)
            assert torch.equal(transposed(x), before_t)
            resized = plain.conv(F.interpolate(x, size=(11, 13), mode="nearest"))
            assert torch.equal(plain(x, output_size=(11, 13)), resized)
        assert torch.allclose(traced, before, atol=1e-5, rtol=0)
        assert use_phase_upsample(model, "stock") == 2 and type(plain) is Upsample2D
    with pytest.raises(ValueError, match="upsample kind must be one of phases, stock; got 'pixel_shuffle'"):
        use_phase_upsample(model, "pixel_shuffle")


def test_phase_upsample_in_the_decoder_only_once_its_lora_is_merged(pipe, monkeypatch):
    """The Difix decoder's upsamplers are LoRA-wrapped convolutions: the phases apply once the adapter is merged (as
    on the GPU fast path), and a traced decode then matches the eager one; unmerged they stay stock."""
    from difix_ns.fixers.upsample_conv import phases_apply, use_phase_upsample

    vae = pipe.vae
    upsamplers = [m for m in vae.decoder.modules() if type(m).__name__.endswith("Upsample2D")]
    assert use_phase_upsample(vae, "phases") == len(upsamplers) > 0
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(1, 3, 32, 48, generator=gen) * 2 - 1
    try:
        assert not any(phases_apply(m) for m in upsamplers)
        vae.merge_lora()
        assert all(phases_apply(m) for m in upsamplers)
        with torch.no_grad():
            posterior, skips = vae.encode_with_skips(x)
            eager = vae.decode_with_skips(posterior.mode(), skips)
            with monkeypatch.context() as patch:
                _compiling(patch)
                traced = vae.decode_with_skips(posterior.mode(), skips)
        assert torch.allclose(traced, eager, atol=1e-4, rtol=0)
    finally:
        vae.unmerge_lora()
        use_phase_upsample(vae, "stock")


def test_fast_step_kernel_options(pipe, monkeypatch, tmp_path):
    """CompiledDifixStep names bad kernel options; compiled, its GroupNorms use the per-channel formulation (by
    default); uncompiled it leaves every module stock (nothing is traced)."""
    from torch import nn

    from difix_ns.fixers.compiled import CompiledDifixStep
    from difix_ns.fixers.group_norm import GroupNormBySize
    from difix_ns.fixers.upsample_conv import CompiledUpsample2D

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # compile=True points inductor's cache somewhere
    compiled = CompiledDifixStep(pipe, 199, "remove degradation", cuda_graphs=False)  # compiles lazily: not called
    norms = [m for m in (*pipe.vae.modules(), *pipe.unet.modules()) if isinstance(m, nn.GroupNorm)]
    assert (compiled.group_norm, compiled.wide_attention, compiled.upsample) == ("auto", "matmul", "phases")
    assert norms and all(type(m) is GroupNormBySize for m in norms)
    assert any(type(m) is CompiledUpsample2D for m in pipe.vae.modules())

    with pytest.raises(ValueError, match="group_norm must be one of auto, channel_stats, channel_sums, stock; got 'f"):
        CompiledDifixStep(pipe, 199, "remove degradation", cuda_graphs=False, compile=False, group_norm="fast")
    with pytest.raises(ValueError, match="wide_attention must be one of matmul, sdpa; got 'flash'"):
        CompiledDifixStep(pipe, 199, "remove degradation", cuda_graphs=False, compile=False, wide_attention="flash")
    with pytest.raises(ValueError, match="upsample must be one of phases, stock; got 'bilinear'"):
        CompiledDifixStep(pipe, 199, "remove degradation", cuda_graphs=False, compile=False, upsample="bilinear")
    step = CompiledDifixStep(pipe, 199, "remove degradation", cuda_graphs=False, compile=False)
    assert (step.group_norm, step.wide_attention, step.upsample) == ("stock", "sdpa", "stock")
    assert not any(type(m) is CompiledUpsample2D for m in pipe.vae.modules())
    assert all(type(m) is nn.GroupNorm for m in pipe.vae.modules() if isinstance(m, nn.GroupNorm))


def test_references_encoded_before_the_fix_give_the_same_frames(pipe):
    """``fix(images, fixer.encode_references(refs, size))`` is ``fix(images, refs)`` bit for bit, on the eager path
    and on the fast step's (where a short tail chunk is padded), so the render hook can encode a batch's references
    before it queues the fix; a mismatched batch or size is refused, and there is nothing to encode without views."""
    from difix_ns.fixers.compiled import CompiledDifixStep
    from difix_ns.fixers.reference_cache import EncodedReferences

    images, refs = _inputs(4, batch=3, views=1)
    eager = DifixFixer.from_pipeline(pipe, model_name="tiny", cache_references=True, batch_size=2)
    encoded = eager.encode_references(refs, (64, 88))
    assert isinstance(encoded, EncodedReferences) and encoded.latents.shape == (3, 1, 4, 8, 11)
    assert eager.reference_cache.misses == 3
    assert torch.equal(eager.fix(images, encoded), eager.fix(images, refs))
    assert eager.reference_cache.misses == 3  # fix(images, refs) found them cached

    fast = DifixFixer.from_pipeline(pipe, model_name="tiny", cache_references=True, batch_size=2)
    step = CompiledDifixStep(pipe, 199, "remove degradation", cuda_graphs=False, compile=False)
    shapes = []
    fast.set_fast_step(lambda x, z=None: shapes.append(tuple(z.shape)) or step(x, z))
    assert torch.equal(fast.fix(images, fast.encode_references(refs, (64, 88))), fast.fix(images, refs))
    assert shapes == [(2, 1, 4, 8, 11)] * 4  # the tail chunk's latents padded like its references

    with pytest.raises(ValueError, match="got 2 images but encoded references for 3"):
        eager.fix(images[:2], encoded)
    with pytest.raises(ValueError, match=r"encoded for \(64, 88\) renders, got 72x88"):
        eager.fix(torch.rand(3, 3, 72, 88), encoded)
    assert eager.encode_references(None, (64, 88)) is None
    assert eager.encode_references(refs[:, :0], (64, 88)) is None


@pytest.mark.parametrize("kind", ["folded", "frozen"])
def test_conditioned_unet_is_the_unet_with_its_conditioning_and_leaves_it_untouched(pipe, kind):
    """The fast path's UNet with its conditioning as constants (prompt embedding and timestep held as buffers; the
    time projections and the prompt's keys / values recorded once, or the sinusoid precomputed for freezing)
    computes what the UNet computes, bit for bit, shares its weights, and does not change the caller's UNet."""
    from diffusers.models.attention_processor import Attention

    from difix_ns.fixers.conditioning import ConditionedUNet, ConstantOutput
    from difix_ns.models.reference_attention import reference_views

    unet = pipe.unet
    before = {name: (type(m), dict(m._modules)) for name, m in unet.named_modules()}
    emb = pipe.prompt_embeddings("remove degradation").expand(2, -1, -1).contiguous()
    t = torch.full((2,), 199, dtype=torch.long)
    sample = torch.randn(2, 4, 8, 11, generator=torch.Generator().manual_seed(5))
    with torch.no_grad(), reference_views(unet, 2):
        conditioned = ConditionedUNet(unet, emb, t, kind=kind)
        expected = unet(sample, t, encoder_hidden_states=emb, return_dict=False)[0]
        assert torch.equal(conditioned(sample), expected)
    assert {name: (type(m), dict(m._modules)) for name, m in unet.named_modules()} == before
    constants = {name for name, m in conditioned.unet.named_modules() if isinstance(m, ConstantOutput)}
    if kind == "frozen":
        assert constants == {"time_proj"}
    else:
        projections = {f"{n}.time_emb_proj" for n, m in unet.named_modules() if getattr(m, "time_emb_proj", None)}
        cross = {f"{n}.{p}" for n, m in unet.named_modules()
                 if isinstance(m, Attention) and m.is_cross_attention for p in ("to_k", "to_v")}
        assert projections and cross and constants == projections | cross
    assert conditioned.unet.mid_block.attentions[0].transformer_blocks[0].ff is unet.mid_block.attentions[0] \
        .transformer_blocks[0].ff
    assert {id(p) for p in conditioned.parameters()} <= {id(p) for p in unet.parameters()}
    with pytest.raises(ValueError, match="runs 2 rows, got a sample of shape \\(3, 4, 8, 11\\)"):
        conditioned(sample[:1].expand(3, -1, -1, -1))
    with pytest.raises(ValueError, match="kind must be folded or frozen, got 'inputs'"):
        ConditionedUNet(unet, emb, t, kind="inputs")


def test_with_submodules_copies_only_the_path_to_what_it_replaces():
    from torch import nn

    from difix_ns.fixers.conditioning import with_submodules

    root = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Linear(2, 2))
    new = nn.Tanh()
    view = with_submodules(root, {"0.1": new})
    assert view[0][1] is new and type(root[0][1]) is nn.ReLU  # the original keeps its module
    assert view is not root and view[0] is not root[0] and view[0][0] is root[0][0] and view[1] is root[1]
    with pytest.raises(AttributeError):
        with_submodules(root, {"0.7": new})


@pytest.mark.parametrize("constants", ["folded", "frozen"])
def test_fast_step_with_constant_conditioning_gives_the_plain_steps_frames(pipe, constants):
    """CompiledDifixStep(constants=...) routes the UNet through its conditioned copy: the same frames, bit for bit
    (uncompiled here; compiled, the constants' inputs are dead code, or folded by inductor's freezing)."""
    from difix_ns.fixers.compiled import CompiledDifixStep

    gen = torch.Generator().manual_seed(6)
    x = torch.rand(2, 3, 64, 88, generator=gen) * 2 - 1
    zref = torch.randn(2, 1, 4, 8, 11, generator=gen)
    plain = CompiledDifixStep(pipe, 199, "remove degradation", cuda_graphs=False, compile=False)
    step = CompiledDifixStep(pipe, 199, "remove degradation", cuda_graphs=False, compile=False, constants=constants)
    assert (plain.constants, step.constants) == ("inputs", constants)
    for latents in (None, zref):
        assert torch.equal(step(x, latents), plain(x, latents))
    assert sorted(step._conditioned_unets) == [2, 4]  # one conditioned UNet per row count (frames x views)
    with pytest.raises(ValueError, match="constants must be one of inputs, folded, frozen; got 'cached'"):
        CompiledDifixStep(pipe, 199, "remove degradation", cuda_graphs=False, compile=False, constants="cached")


def test_frozen_compiled_calls_trace_with_inductor_freezing_on():
    """Dynamo reads inductor's freezing flag when it traces (parameters then stay constants of the graph): the
    frozen step's compiled functions are called with it on, and the process setting is back afterwards."""
    import torch._inductor.config as inductor_config

    from difix_ns.fixers.compiled import with_freezing

    seen = []

    def compiled(x, scale=1):
        seen.append(inductor_config.freezing)
        return x * scale

    before = inductor_config.freezing
    assert with_freezing(compiled)(2, scale=3) == 6
    assert seen == [True] and inductor_config.freezing == before

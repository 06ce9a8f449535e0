"""Difix model structure, checkpoint layout, strict loading and clear loading errors (CPU, tiny models)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from difix_ns.diffusion.hub import ModelResolutionError
from difix_ns.diffusion.state_dict import StateDictMismatchError
from difix_ns.pipeline_difix import DifixPipeline
from difix_ns.testing import save_tiny_difix
from conftest import SHARED

REFERENCE = SHARED / "reference" / "difix_checkpoint"


def _reference_file(name: str) -> Path:
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"reference key list {path} is absent (../shared/reference not checked out)")
    return path


def _real_vae_keys() -> dict[str, tuple]:
    keys = {}
    for line in _reference_file("vae_difix_keys_with_shapes.txt").read_text().splitlines():
        name, shape = line.split("\t")
        keys[name] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return keys


def _real_unet_keys() -> dict[str, tuple]:
    return {k: tuple(v) for k, v in json.loads(_reference_file("unet_keys_shapes.json").read_text()).items()}


def _meta_real_models():
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from difix_ns.models.autoencoder import DifixAutoencoderKL
    from difix_ns.models.configs import real_configs

    configs = real_configs()
    with init_empty_weights():
        return DifixAutoencoderKL.from_config(configs["vae"]), UNet2DConditionModel.from_config(configs["unet"])


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("difix_tiny")
    return {"ref": save_tiny_difix(root / "ref", True), "plain": save_tiny_difix(root / "plain", False)}


def _shapes(module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_real_size_vae_matches_the_338_checkpoint_keys_and_shapes():
    vae, _ = _meta_real_models()
    assert _shapes(vae) == _real_vae_keys()
    lora = vae.peft_config["vae_skip"]
    assert lora.r == 4 and lora.lora_alpha == 8 and lora.init_lora_weights == "gaussian"
    wrapped = [n for n, m in vae.named_modules() if "vae_skip" in getattr(m, "lora_A", {})]
    assert len(wrapped) == 43 and all(n.startswith("decoder.") for n in wrapped)
    assert {"decoder.skip_conv_4", "decoder.up_blocks.3.resnets.0.conv_shortcut", "decoder.conv_out"} <= set(wrapped)
    assert sum(p.numel() for p in vae.parameters()) == 84_669_315
    assert not any(p.requires_grad for p in vae.encoder.parameters())
    assert vae.config.lora_rank == 4 and vae.config.gamma == 1.0 and vae.config.ignore_skip is False


def test_real_size_unet_matches_the_686_checkpoint_keys_and_shapes():
    _, unet = _meta_real_models()
    assert _shapes(unet) == _real_unet_keys()
    assert sum(p.numel() for p in unet.parameters()) == 865_910_724


def test_real_size_text_encoder_has_the_372_checkpoint_tensors():
    from accelerate import init_empty_weights
    from transformers import CLIPTextConfig, CLIPTextModel

    from difix_ns.models.configs import real_configs
    from difix_ns.models.loading import _add_text_prefix

    with init_empty_weights():
        model = CLIPTextModel(CLIPTextConfig.from_dict(real_configs()["text_encoder"]))
    keys = _add_text_prefix(model.state_dict())
    assert len(keys) == 372 and "text_model.encoder.layers.22.mlp.fc2.weight" in keys
    assert sum(p.numel() for p in model.parameters()) == 340_387_840


@pytest.mark.parametrize(
    "bundled, reference",
    [
        ("unet_config.json", "difix_unet_config.json"),
        ("vae_config.json", "difix_vae_config.json"),
        ("scheduler_config.json", "difix_scheduler_config.json"),
        ("text_encoder_config.json", "difix_ref_text_encoder_config.json"),
    ],
)
def test_bundled_configs_equal_the_reconstructed_checkpoint_configs(bundled, reference):
    from importlib import resources

    ours = json.loads((resources.files("difix_ns.models") / "configs" / bundled).read_text())
    assert ours == json.loads(_reference_file(reference).read_text())
    if bundled == "text_encoder_config.json":
        assert ours["num_hidden_layers"] == 23 and ours["hidden_size"] == 1024


def test_fresh_vae_starts_with_near_zero_skips_and_zero_lora_b():
    from difix_ns.models.autoencoder import DifixAutoencoderKL
    from difix_ns.models.configs import tiny_configs

    vae = DifixAutoencoderKL.from_config(tiny_configs(vocab_size=600)["vae"])
    skips = {k: v for k, v in vae.state_dict().items() if "skip_conv" in k and "base_layer" in k}
    assert len(skips) == 4 and all(bool((v == 1e-5).all()) for v in skips.values())
    lora_b = [v for k, v in vae.state_dict().items() if "lora_B.vae_skip" in k]
    assert len(lora_b) == 43 and all(not v.any() for v in lora_b)  # PEFT gaussian init: the adapter starts as a no-op


def test_trust_remote_code_is_accepted_and_no_checkpoint_code_runs(tiny_dirs, tmp_path):
    from difix_ns.diffusion.hub import DEFAULT_ALLOW_PATTERNS

    assert not any(p.endswith(".py") or p == "*" for p in DEFAULT_ALLOW_PATTERNS)  # hub snapshots skip *.py
    folder = tmp_path / "with_remote_code"
    shutil.copytree(tiny_dirs["ref"], folder)
    marker = tmp_path / "remote_code_ran"
    payload = f"open({str(marker)!r}, 'w').write('ran')\nraise RuntimeError('remote code executed')\n"
    for name in ("vae/autoencoder_kl.py", "unet/unet_2d_condition.py", "pipeline_difix.py"):
        (folder / name).write_text(payload)  # what nvidia/difix_ref ships next to its weights
    x, refs = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 1, 3, 64, 64) * 2 - 1
    pipe = DifixPipeline.from_pretrained(folder, trust_remote_code=True)
    assert not marker.exists()
    assert type(pipe.vae).__module__ == "difix_ns.models.autoencoder"
    assert pipe.reference_mixing  # the model_index entry is read as a description, the .py is never imported
    assert torch.equal(pipe.restore(x, refs), DifixPipeline.from_pretrained(tiny_dirs["ref"]).restore(x, refs))


def test_tiny_models_use_the_real_layout_and_key_names(tiny_dirs):
    from safetensors import safe_open

    for kind, folder in tiny_dirs.items():
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert {
            "model_index.json",
            "scheduler/scheduler_config.json",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors",
        } <= files
        assert not any(f.endswith(".py") for f in files)
        index = json.loads((folder / "model_index.json").read_text())
        assert index["vae"] == ["autoencoder_kl", "AutoencoderKL"]
        unet_library = "unet_2d_condition" if kind == "ref" else "diffusers"
        assert index["unet"] == [unet_library, "UNet2DConditionModel"]
        assert index["scheduler"] == ["diffusers", "DDPMScheduler"]
        vae_config = json.loads((folder / "vae" / "config.json").read_text())
        assert vae_config["_class_name"] == "AutoencoderKL"
        assert {"lora_rank", "gamma", "ignore_skip"} <= set(vae_config)
        with safe_open(str(folder / "vae" / "diffusion_pytorch_model.safetensors"), "pt") as f:
            assert set(f.keys()) == set(_real_vae_keys())
        with safe_open(str(folder / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
            assert set(f.keys()) == set(_real_unet_keys())


def test_text_encoder_uses_checkpoint_naming_and_loads_either_prefix(tiny_dirs, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "te"
    shutil.copytree(tiny_dirs["plain"], folder)
    weights = folder / "text_encoder" / "model.safetensors"
    state = load_file(str(weights))
    assert all(k.startswith("text_model.") for k in state)  # as in nvidia/difix (transformers 4 layout)
    assert {"text_model.embeddings.token_embedding.weight", "text_model.final_layer_norm.weight"} <= set(state)
    assert len(state) == 2 + 16 * 2 + 2  # 2 embeddings, 16 tensors per layer, final norm (real: 23 layers -> 372)
    reference = DifixPipeline.from_pretrained(folder).prompt_embeddings()
    save_file({k.removeprefix("text_model."): v for k, v in state.items()}, str(weights))
    assert torch.equal(DifixPipeline.from_pretrained(folder).prompt_embeddings(), reference)


def test_reference_mixing_follows_model_index(tiny_dirs):
    assert DifixPipeline.from_pretrained(tiny_dirs["ref"], trust_remote_code=True).reference_mixing
    assert not DifixPipeline.from_pretrained(tiny_dirs["plain"], trust_remote_code=True).reference_mixing


def test_save_and_reload_is_bit_identical(tiny_dirs, tmp_path):
    pipe = DifixPipeline.from_pretrained(tiny_dirs["ref"])
    torch.manual_seed(1)
    x, refs = torch.rand(1, 3, 64, 72) * 2 - 1, torch.rand(1, 2, 3, 64, 72) * 2 - 1
    before = pipe.restore(x, refs)
    pipe.save_pretrained(tmp_path / "copy")
    tokenizer_files = sorted(p.name for p in (tmp_path / "copy" / "tokenizer").iterdir())
    assert tokenizer_files == ["merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json"]
    again = DifixPipeline.from_pretrained(tmp_path / "copy")
    assert again.reference_mixing
    after = again.restore(x, refs)
    assert torch.equal(before, after)
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(pipe, name).state_dict(), getattr(again, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("component", ["vae", "unet"])
def test_renamed_key_fails_naming_the_key(tiny_dirs, tmp_path, component):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(tiny_dirs["ref"], folder)
    weights = folder / component / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    old = sorted(k for k in state if "up_blocks.1" in k)[0]
    state[old.replace("up_blocks.1", "up_blocks.9")] = state.pop(old)
    save_file(state, str(weights))
    with pytest.raises(StateDictMismatchError) as err:
        DifixPipeline.from_pretrained(folder)
    message = str(err.value)
    assert old in message and old.replace("up_blocks.1", "up_blocks.9") in message and str(weights) in message


def test_wrong_shape_is_reported(tiny_dirs, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "shape"
    shutil.copytree(tiny_dirs["plain"], folder)
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state["decoder.skip_conv_1.base_layer.weight"] = torch.zeros(1, 1, 1, 1)
    save_file(state, str(weights))
    with pytest.raises(StateDictMismatchError, match="decoder.skip_conv_1.base_layer.weight"):
        DifixPipeline.from_pretrained(folder)


def test_unreachable_hub_id_offline_names_the_id(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelResolutionError, match="nvidia/difix_ref") as err:
        DifixPipeline.from_pretrained("nvidia/difix_ref", trust_remote_code=True, cache_dir=str(tmp_path))
    assert "HF_HUB_OFFLINE" in str(err.value)


def test_missing_directory_and_missing_files_are_named(tiny_dirs, tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(ModelResolutionError, match="no_such_model"):
        DifixPipeline.from_pretrained(str(missing))
    folder = tmp_path / "incomplete"
    shutil.copytree(tiny_dirs["plain"], folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelResolutionError, match=r"unet[/\\]diffusion_pytorch_model.safetensors"):
        DifixPipeline.from_pretrained(folder)
    (folder / "model_index.json").unlink()
    with pytest.raises(ModelResolutionError, match="model_index.json"):
        DifixPipeline.from_pretrained(folder)


def test_x0_step_matches_ddpm_with_custom_timestep(tiny_dirs):
    pipe = DifixPipeline.from_pretrained(tiny_dirs["plain"])
    abar = float(pipe.scheduler.alphas_cumprod[199])
    assert abar == pytest.approx(0.755238, abs=1e-6)
    torch.manual_seed(0)
    z, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    ours = pipe.predict_x0(z, eps, 199)
    pipe.scheduler.set_timesteps(timesteps=[199])
    ddpm = pipe.scheduler.step(eps, 199, z).pred_original_sample
    assert torch.allclose(ours, ddpm, atol=1e-6)
    assert torch.allclose(ours, (z - (1 - abar) ** 0.5 * eps) / abar**0.5, atol=1e-6)


def test_decoder_skips_come_from_the_degraded_view(tiny_dirs):
    vae = DifixPipeline.from_pretrained(tiny_dirs["ref"]).vae
    torch.manual_seed(0)
    views = torch.rand(2, 3, 3, 64, 64) * 2 - 1  # [B=2, 1 + V=2, ...]
    _, skips = vae.encode_with_skips(views.flatten(0, 1), keep_every=3)
    _, alone = vae.encode_with_skips(views[:, 0])
    assert [s.shape[0] for s in skips] == [2, 2, 2, 2]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(skips, alone))
    # The skip path is live: zero skips change the decoded image.
    z = torch.randn(2, 4, 8, 8)
    assert not torch.allclose(vae.decode_with_skips(z, skips), vae.decode_with_skips(z, None))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_vae_decodes_in_its_weights_layout(tiny_dirs, layout):
    """The decoder's activations keep the layout of its weights after the mid-block attention (whose output is a
    channels_last-strided view): in the default layout no GroupNorm or convolution of the up blocks converts."""
    vae = DifixPipeline.from_pretrained(tiny_dirs["ref"]).vae.to(memory_format=layout)
    seen = []
    hooks = [block.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
             for block in (vae.encoder.conv_norm_out, *vae.decoder.up_blocks)]
    torch.manual_seed(0)
    x = (torch.rand(1, 3, 64, 64) * 2 - 1).contiguous(memory_format=layout)
    posterior, skips = vae.encode_with_skips(x)
    vae.decode_with_skips(posterior.mode(), skips)
    for hook in hooks:
        hook.remove()
    assert len(seen) == 1 + len(vae.decoder.up_blocks)
    assert all(h.is_contiguous(memory_format=layout) for h in seen)


def test_reference_attention_is_per_instance_and_joint(tiny_dirs):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from difix_ns.models.reference_attention import MultiViewSelfAttnProcessor, reference_views, self_attention_modules

    with_refs = DifixPipeline.from_pretrained(tiny_dirs["ref"]).unet
    plain = DifixPipeline.from_pretrained(tiny_dirs["plain"]).unet
    mixed = self_attention_modules(with_refs)
    assert len(mixed) == 16  # every BasicTransformerBlock of the SD-2.1 UNet (down 6, mid 1, up 9)
    assert all(isinstance(a.processor, MultiViewSelfAttnProcessor) for a in mixed)
    assert all(not isinstance(a.processor, MultiViewSelfAttnProcessor) for a in self_attention_modules(plain))
    attn = mixed[0]
    torch.manual_seed(0)
    tokens = torch.randn(4, 5, attn.to_q.in_features)  # 2 samples x 2 views
    with reference_views(with_refs, 2):
        joint = attn(tokens)
    expected = AttnProcessor2_0()(attn, tokens.reshape(2, 10, -1)).reshape(4, 5, -1)
    assert torch.allclose(joint, expected, atol=1e-6)
    assert not torch.allclose(joint, AttnProcessor2_0()(attn, tokens), atol=1e-4)


def test_last_self_attention_can_skip_the_references_queries(tiny_dirs):
    """The fast path's ``render_queries_last``: the UNet's last self-attention in execution order computes the
    degraded view's queries only; the degraded view's output is unchanged, and only the references' rows (which the
    step drops) differ."""
    from difix_ns.models.reference_attention import reference_views, self_attention_modules

    unet = DifixPipeline.from_pretrained(tiny_dirs["ref"]).unet
    modules = self_attention_modules(unet)
    order = []
    hooks = [m.register_forward_hook(lambda mod, args, out: order.append(mod)) for m in modules]
    torch.manual_seed(0)
    z = torch.randn(4, 4, 8, 8)  # 2 samples x (degraded view + 1 reference)
    emb = torch.randn(4, 77, unet.config.cross_attention_dim)
    t = torch.full((4,), 199)
    with torch.no_grad(), reference_views(unet, 2):
        full = unet(z, t, encoder_hidden_states=emb, return_dict=False)[0]
    for hook in hooks:
        hook.remove()
    assert order == modules  # execution order: the flagged processor is the one that runs last
    assert [m.processor.last for m in modules] == [False] * (len(modules) - 1) + [True]
    with torch.no_grad(), reference_views(unet, 2, render_queries_last=True):
        pruned = unet(z, t, encoder_hidden_states=emb, return_dict=False)[0]
    assert torch.allclose(pruned[::2], full[::2], atol=1e-6, rtol=0)
    assert not torch.allclose(pruned[1::2], full[1::2], atol=1e-3)  # the flag did take effect
    assert unet._difix_reference_state.render_queries_last is False  # restored after the block

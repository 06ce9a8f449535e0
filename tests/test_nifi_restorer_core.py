"""NiFi restorer: σ(t0), LoRA targets, SD3/SD-Turbo backbones in the real layouts, determinism, LoRA files (CPU)."""
from __future__ import annotations

import shutil
import warnings

import pytest
import torch

from nifi_ns.restoration import lora as L
from nifi_ns.restoration.flow import SigmaTable, add_noise, euler_step, flow_sigma_table_sd3, vp_sigma_table
from nifi_ns.restoration.files import load_prompt_embeds

SD3_MEDIUM_TRANSFORMER = dict(  # stabilityai/stable-diffusion-3-medium-diffusers transformer/config.json
    sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64, num_attention_heads=24,
    joint_attention_dim=4096, caption_projection_dim=1536, pooled_projection_dim=2048, out_channels=16,
    pos_embed_max_size=192,
)
SD3_MEDIUM_VAE = dict(  # its vae/config.json
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False,
)


@pytest.fixture(scope="module")
def tiny_sd3(tmp_path_factory):
    from nifi_ns.restoration.testing import make_tiny_sd3

    return make_tiny_sd3(tmp_path_factory.mktemp("models") / "tiny_sd3")


@pytest.fixture(scope="module")
def tiny_turbo(tmp_path_factory):
    from nifi_ns.restoration.testing import make_tiny_sdturbo

    return make_tiny_sdturbo(tmp_path_factory.mktemp("models") / "tiny_turbo")


def _restorer(path, backbone="sd3", **kw):
    from nifi_ns.restoration.config import NiFiRestorerConfig
    from nifi_ns.restoration.restorer import NiFiRestorer

    return NiFiRestorer(NiFiRestorerConfig(backbone=backbone, model_path=str(path), device="cpu", **kw))


# ----- schedule ------------------------------------------------------------------------------------------------
def test_t0_199_maps_to_sigma_0198_with_sd3_shift():
    from diffusers import FlowMatchEulerDiscreteScheduler

    table = flow_sigma_table_sd3(FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0))
    sigma, timestep = table.sigma_at_timestep(199)
    assert sigma == pytest.approx(0.198, abs=1e-3)
    assert abs(timestep - 199) < 1.5 and timestep == pytest.approx(1000 * sigma, rel=1e-5)
    assert table.sigma_min == pytest.approx(0.003, abs=2e-4)  # the official step ends at the smallest table σ
    # without the shift the same lookup would give σ = 0.199 -> index differs; with it σ is not 3*0.199/(1+2*0.199)
    assert abs(sigma - 3 * 0.199 / (1 + 2 * 0.199)) > 0.2


def test_sd3_restorer_uses_sigma_0198(tiny_sd3):
    r = _restorer(tiny_sd3)
    assert r.sigma_t0 == pytest.approx(0.198, abs=1e-3)
    assert r.sigma_end == pytest.approx(r.backbone.table.sigma_min)
    assert r.backbone.pad_multiple == 16  # 8 px per latent cell x patch 2


def test_vp_table_is_the_difix_timestep_199():
    from diffusers import DDPMScheduler

    ac = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").alphas_cumprod
    sigma, _ = vp_sigma_table(ac).sigma_at_timestep(199)
    a, b = ac[199].sqrt(), (1 - ac[199]).sqrt()
    assert float(ac[199]) == pytest.approx(0.7552, abs=1e-3)  # reference difix3d.md §1.2
    assert sigma == pytest.approx(float(b / (a + b)), rel=1e-6)


def test_flow_maths_one_step_recovers_x0_from_exact_velocity():
    x, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    xt = add_noise(x, eps, torch.tensor([0.2, 0.7]))
    assert torch.allclose(euler_step(xt, eps - x, torch.tensor([0.2, 0.7]), 0.0), x, atol=1e-6)
    with pytest.raises(ValueError, match="ascending"):
        SigmaTable(torch.arange(3.0), torch.tensor([0.3, 0.2, 0.1]))


def test_sdturbo_velocity_matches_unet_x0_prediction(tiny_turbo):
    r = _restorer(tiny_turbo, backbone="sdturbo")
    bb = r.backbone
    x_flow = torch.randn(1, 4, 8, 8)
    emb = bb.encode_prompts(["remove degradation"])
    t = torch.tensor([199.0])
    v = bb.velocity(x_flow, t, emb)
    sigma = float(bb.table.sigmas[199])
    ac = bb.alphas_cumprod[199]
    a, b = ac.sqrt(), (1 - ac).sqrt()
    x_vp = x_flow * (a + b)
    with torch.no_grad():
        eps = bb.denoiser(x_vp, 199, encoder_hidden_states=emb.prompt_embeds).sample
    x0 = (x_vp - b * eps) / a  # Difix's single DDPM step to x̂0
    assert torch.allclose(euler_step(x_flow, v, sigma, 0.0), x0, atol=1e-5)
    assert r.sigma_end == 0.0 and r.backbone.pad_multiple == 16


# ----- LoRA targets ----------------------------------------------------------------------------------------------
def test_lora_target_lists_match_reference():
    assert L.SD3_TRANSFORMER_TARGETS == ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj",
                                         "proj", "linear", "proj_out")
    assert L.SD3_CRITIC_TARGETS == ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj")


def test_lora_targets_on_real_sd3_medium_architecture():
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, SD3Transformer2DModel

    with init_empty_weights():
        transformer = SD3Transformer2DModel(**SD3_MEDIUM_TRANSFORMER)
        vae = AutoencoderKL(**SD3_MEDIUM_VAE)
        vae_qc = AutoencoderKL(**{**SD3_MEDIUM_VAE, "use_quant_conv": True})
    names = L.matched_modules(transformer, L.SD3_TRANSFORMER_TARGETS)
    for target in L.SD3_TRANSFORMER_TARGETS:
        assert any(n == target or n.endswith("." + target) for n in names), target
    assert sum(n.endswith("attn.to_q") for n in names) == 24
    assert "context_embedder" not in names and not any("time_text_embed" in n for n in names)
    critic = L.matched_modules(transformer, L.SD3_CRITIC_TARGETS)
    assert not any(n.endswith((".proj", ".linear", "proj_out")) for n in critic) and len(critic) == 24 * 7 - 0

    enc = L.vae_encoder_targets(vae)
    assert len(enc) == 31 and not any("decoder" in n for n in enc)  # SD3's VAE has no quant_conv
    assert {"encoder.conv_in", "encoder.conv_out", "encoder.mid_block.attentions.0.to_q",
            "encoder.mid_block.attentions.0.to_out.0"} <= set(enc)
    assert sum(".conv_shortcut" in n for n in enc) == 2 and sum("downsamplers" in n for n in enc) == 3
    enc_qc = L.vae_encoder_targets(vae_qc)
    assert len(enc_qc) == 32 and enc_qc[-1] == "quant_conv"  # the 32 modules of the official list


def test_adapters_land_exactly_on_targets(tiny_sd3):
    r = _restorer(tiny_sd3)
    bb = r.backbone
    expected_denoiser = set(L.matched_modules(bb.denoiser, bb.generator_targets))
    expected_vae = set(L.vae_encoder_targets(bb.vae))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second adapter is the design, not something to warn a user about
        bb.add_generator_lora(4)
        bb.add_critic_lora(4)
    adapted = {n for n, m in bb.denoiser.named_modules() if L.PHI_MINUS in getattr(m, "lora_A", {})}
    adapted_vae = {n for n, m in bb.vae.named_modules() if L.PHI_MINUS in getattr(m, "lora_A", {})}
    critic = {n for n, m in bb.denoiser.named_modules() if L.PHI_PLUS in getattr(m, "lora_A", {})}
    assert adapted == expected_denoiser and adapted_vae == expected_vae
    assert critic == set(L.matched_modules(bb.denoiser, L.SD3_CRITIC_TARGETS)) and critic < adapted
    assert all(m.r[L.PHI_MINUS] == 4 for n, m in bb.vae.named_modules() if n in adapted_vae)
    assert not any("decoder" in n for n in adapted_vae)
    assert all(p.dtype == torch.float32 for p in bb.generator_parameters() + bb.critic_parameters())
    # both adapters stay trainable (PEFT's add_adapter would freeze the first one when the second is added)
    assert all(p.requires_grad for p in bb.generator_parameters() + bb.critic_parameters())


# ----- inference -------------------------------------------------------------------------------------------------
def test_restore_is_deterministic_under_a_seed(tiny_sd3):
    r = _restorer(tiny_sd3)
    x = torch.rand(3, 3, 50, 70)  # odd size: reflect padding + crop back
    a, b = r.restore(x, seed=7), r.restore(x, seed=7)
    c = r.restore(x, seed=8)
    assert a.shape == x.shape and a.dtype == torch.float32 and 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    r_stochastic = _restorer(tiny_sd3, seed=None)
    assert not torch.equal(r_stochastic.restore(x), r_stochastic.restore(x))  # official behaviour without a seed


def test_restorer_satisfies_the_fixer_contract(tiny_sd3):
    from difix_ns.fixers import ImageFixer

    r = _restorer(tiny_sd3, seed=3)
    x = torch.rand(2, 3, 32, 48)
    assert isinstance(r, ImageFixer) and r.uses_references is False
    assert torch.equal(r.fix(x, refs=torch.rand(2, 1, 3, 32, 48)), r.restore(x))  # refs ignored, config seed used


def test_lora_file_roundtrip_changes_and_reproduces_output(tiny_sd3, tmp_path):
    r = _restorer(tiny_sd3)
    x = torch.rand(1, 3, 48, 48)
    base = r.restore(x)
    r.backbone.add_generator_lora(4)
    assert torch.equal(r.restore(x), base)  # zero-initialised B: an untrained adapter is the identity
    torch.manual_seed(0)
    for p in r.backbone.generator_parameters():
        p.data.normal_(0, 0.05)
    adapted = r.restore(x)
    assert not torch.equal(adapted, base)
    path = r.backbone.save_generator_lora(tmp_path / "phi_minus.safetensors", 4, 4.0, {"t0": 199})
    reloaded = _restorer(tiny_sd3, lora_path=str(path))
    assert torch.equal(reloaded.restore(x), adapted)
    with pytest.raises(ValueError, match="t0=199"):
        _restorer(tiny_sd3, lora_path=str(path), t0=399)
    # the Euler step's end recorded at training time is used unless the config overrides it
    assert reloaded.sigma_end == pytest.approx(reloaded.backbone.table.sigma_min)
    zero = r.backbone.save_generator_lora(tmp_path / "zero.safetensors", 4, 4.0, {"t0": 199, "final_sigma": "zero"})
    assert _restorer(tiny_sd3, lora_path=str(zero)).sigma_end == 0.0
    assert _restorer(tiny_sd3, lora_path=str(zero), final_sigma="table_min").sigma_end > 0


def test_lora_file_errors(tiny_sd3, tiny_turbo, tmp_path):
    r = _restorer(tiny_turbo, backbone="sdturbo")
    r.backbone.add_generator_lora(4)
    turbo_file = r.backbone.save_generator_lora(tmp_path / "turbo.safetensors", 4, 4.0)
    with pytest.raises(L.LoraMismatchError, match="backbone 'sdturbo'"):
        _restorer(tiny_sd3, lora_path=str(turbo_file))
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(L.LoraMismatchError, match="no 'nifi' metadata"):
        _restorer(tiny_sd3, lora_path=str(tmp_path / "foreign.safetensors"))


def test_precomputed_embeddings_need_no_text_encoder(tiny_sd3, tmp_path):
    from difix_ns.diffusion.hub import ModelResolutionError

    full = _restorer(tiny_sd3)
    emb = full.prompt_embeds(1)
    assert emb.prompt_embeds.shape == (1, 77 + 256, 32) and emb.pooled.shape == (1, 32)  # CLIP-L/G tokens + T5 tokens
    emb_file = emb.save(tmp_path / "emb.safetensors", full.config.prompt, "sd3")
    stripped = tmp_path / "no_text"
    shutil.copytree(tiny_sd3, stripped)
    for sub in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        shutil.rmtree(stripped / sub)
    x = torch.rand(1, 3, 32, 32)
    offline = _restorer(stripped, prompt_embeds_path=str(emb_file))
    assert torch.equal(offline.restore(x), full.restore(x))
    with pytest.raises(ModelResolutionError, match="prompt_embeds_path"):
        _restorer(stripped).restore(x)
    loaded = load_prompt_embeds(emb_file, "sd3")
    assert torch.equal(loaded.prompt_embeds, emb.prompt_embeds.float())
    with pytest.raises(ValueError, match="backbone 'sd3'"):
        load_prompt_embeds(emb_file, "sdturbo")


@pytest.mark.parametrize("kind", ["sd3", "sdturbo"])
def test_backbone_loads_in_the_dtype_asked_for_without_deprecated_keywords(kind, tiny_sd3, tiny_turbo):
    import warnings

    from nifi_ns.restoration.backbones import load_backbone

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*torch_dtype.*")  # diffusers >= 0.40 spells it ``dtype``
        bb = load_backbone(kind, tiny_sd3 if kind == "sd3" else tiny_turbo, device="cpu", dtype=torch.bfloat16)
        embeds = bb.encode_prompts(["a photo"])
    assert {p.dtype for p in bb.denoiser.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bb.vae.parameters()} == {torch.bfloat16}
    assert torch.isfinite(embeds.prompt_embeds.float()).all()


@pytest.mark.parametrize(
    "library, release, keyword",
    [("diffusers", "0.39.0", "torch_dtype"), ("diffusers", "0.40.0", "dtype"), ("diffusers", "1.0.0.dev0", "dtype"),
     ("transformers", "4.55.4", "torch_dtype"), ("transformers", "4.56.0", "dtype"), ("transformers", "5.2", "dtype")],
)
def test_dtype_keyword_follows_the_installed_release(monkeypatch, library, release, keyword):
    # older releases ignore an unknown ``dtype`` and would load float32 weights; newer ones deprecate ``torch_dtype``
    import importlib.metadata

    from nifi_ns.restoration.backbones import dtype_keyword

    monkeypatch.setattr(importlib.metadata, "version", lambda name: release if name == library else "0")
    assert dtype_keyword(library, torch.bfloat16) == {keyword: torch.bfloat16}


def test_missing_model_folder_is_a_clear_error(tmp_path):
    from difix_ns.diffusion.hub import ModelResolutionError

    with pytest.raises(ModelResolutionError, match="does not exist"):
        _restorer(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model_index.json").write_text("{}")
    with pytest.raises(ModelResolutionError, match="scheduler/scheduler_config.json"):
        _restorer(tmp_path / "half")


def test_sd3_hub_id_of_the_nifi_readme_means_its_diffusers_copy(tmp_path, monkeypatch):
    from nifi_ns.restoration.config import SD3_HUB_ID, NiFiRestorerConfig

    assert NiFiRestorerConfig().resolved_model_path() == SD3_HUB_ID == "stabilityai/stable-diffusion-3-medium-diffusers"
    readme_id = "stabilityai/stable-diffusion-3-medium"  # single-file checkpoints only, no model_index.json
    assert NiFiRestorerConfig(model_path=readme_id).resolved_model_path() == SD3_HUB_ID
    assert NiFiRestorerConfig(backbone="sdturbo").resolved_model_path() == "stabilityai/sd-turbo"
    monkeypatch.chdir(tmp_path)
    (tmp_path / readme_id).mkdir(parents=True)  # a local folder of that name is used as it is
    assert NiFiRestorerConfig(model_path=readme_id).resolved_model_path() == readme_id

"""Fast checks of the nifi-splatfacto building blocks (no training)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nifi_ns.io.gaussians import GaussianSplat


def _splat(n=5, degree=1, seed=0):
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2 - 1
    return GaussianSplat(rng.normal(size=(n, 3)), rng.normal(size=(n, 3)), rng.normal(size=(n, 4)),
                         rng.normal(size=(n, 1)), rng.normal(size=(n, 3)), rng.normal(size=(n, k, 3)), degree)


def test_config_module_is_import_light_and_registered():
    code = (
        "import sys; from nifi_ns.nerfstudio.method_configs import nifi_splatfacto_method as m;"
        "heavy=[k for k in sys.modules if k.split('.')[0] in ('diffusers','transformers','peft')];"
        "print(m.config.method_name, heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "nifi-splatfacto []"


def test_default_config():
    from nifi_ns.nerfstudio.method_configs import nifi_splatfacto_config

    cfg = nifi_splatfacto_config()
    assert cfg.method_name == "nifi-splatfacto"
    assert cfg.pipeline.rates == (0.1, 0.5, 1.0)
    assert cfg.pipeline.compress_at_step is None and cfg.pipeline.finetune_steps > 0
    assert cfg.pipeline.restorer.enabled is False  # restorer off by default


def test_sh_padding_round_trip():
    from nifi_ns.nerfstudio.gaussian_swap import params_to_splat, splat_to_params

    splat = _splat(degree=1)
    params = splat_to_params(splat, sh_degree=3, device="cpu")
    assert params["features_rest"].shape == (5, 15, 3)
    assert torch.all(params["features_rest"][:, 3:] == 0)
    assert params_to_splat(params, 1).equal(splat)
    with pytest.raises(ValueError, match="SH degree 1 > the model's 0"):
        splat_to_params(splat, sh_degree=0, device="cpu")


def test_degree_zero_models_colours_are_sigmoid_logits_outside_and_sh_dc_inside_the_splat():
    """splatfacto at SH degree 0 renders sigmoid(features_dc); exported / coded splats must show the same colour."""
    from nifi_ns.nerfstudio.fake_quant import fake_quantize
    from nifi_ns.nerfstudio.gaussian_swap import params_to_splat, splat_to_params
    from nifi_ns.codec import CodecConfig

    model_params = splat_to_params(_splat(n=400, degree=0, seed=1), sh_degree=0, device="cpu")
    model_params["features_dc"] = torch.randn(400, 3) * 3  # logits, as a trained degree-0 model holds them
    splat = GaussianSplat.from_gauss_params(model_params)
    np.testing.assert_allclose(splat.rgb(), torch.sigmoid(model_params["features_dc"]).numpy(), atol=1e-6)
    back = splat_to_params(splat, sh_degree=0, device="cpu")
    torch.testing.assert_close(back["features_dc"], model_params["features_dc"], atol=3e-3, rtol=0)  # float32 tanh
    np.testing.assert_allclose(params_to_splat(back, 0).features_dc, splat.features_dc, atol=1e-6)
    # models with SH bands hold SH DC already: unchanged
    assert GaussianSplat.from_gauss_params(splat_to_params(splat, sh_degree=3, device="cpu")).features_dc.tolist() \
        == splat.features_dc.tolist()
    # quantisation in the fine-tune puts a degree-0 model's colours on the codec's SH DC grid, not a logit grid
    cfg = CodecConfig(color_bits=3, clip_percentile=0.0)
    shown = GaussianSplat.from_gauss_params(fake_quantize(model_params, cfg)).features_dc
    for channel in shown.T:
        levels = np.unique(channel.round(4))
        assert len(levels) <= 8
        np.testing.assert_allclose(np.diff(levels), np.diff(levels).min(), rtol=1e-2)  # evenly spaced in SH DC


def test_swap_restores_original_parameters():
    from nifi_ns.nerfstudio.gaussian_swap import splat_to_params, swapped_gaussians

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gauss_params = torch.nn.ParameterDict(
                {k: torch.nn.Parameter(v) for k, v in splat_to_params(_splat(7, 1), 1, "cpu").items()}
            )

    model = Holder()
    original = model.gauss_params
    with swapped_gaussians(model, splat_to_params(_splat(3, 1, seed=1), 1, "cpu")) as gp:
        assert model.gauss_params is gp and gp["means"].shape[0] == 3
    assert model.gauss_params is original and original["means"].shape[0] == 7


def test_stage_registry_and_errors():
    from nifi_ns.nerfstudio.eval_stages import EVAL_STAGES, EvalStage, build_stages, register_eval_stage
    from nifi_ns.nerfstudio.restorer_config import NifiRestorerStageConfig

    class FakePipeline:
        class config:  # noqa: N801 - mimics pipeline.config
            restorer = NifiRestorerStageConfig()

    with pytest.raises(ValueError, match=r"--pipeline.eval-stages: unknown stage\(s\) \['nope'\]"):
        build_stages(["compressed", "nope"], FakePipeline())
    assert [s.name for s in build_stages(["compressed", "restored"], FakePipeline())] == ["compressed"]

    @register_eval_stage("inverted_for_test")
    class Inverted(EvalStage):
        def __call__(self, pipeline, rate, view):
            return 1.0 - view.images["compressed"]

    try:
        stages = build_stages(["compressed", "inverted_for_test"], FakePipeline())
        assert [s.name for s in stages] == ["compressed", "inverted_for_test"]
    finally:
        EVAL_STAGES.pop("inverted_for_test")


def test_target_mb_must_match_rates():
    from nifi_ns.nerfstudio.compression import CompressionSettings
    from nifi_ns.nerfstudio.nifi_pipeline import NifiPipelineConfig

    cfg = NifiPipelineConfig(rates=(0.1, 0.5), target_mb=(1.0,))
    with pytest.raises(ValueError, match="--pipeline.target-mb has 1 values but --pipeline.rates has 2"):
        CompressionSettings.from_pipeline_config(cfg, 0.1)
    cfg = NifiPipelineConfig(rates=(0.1, 0.5), target_mb=(1.0, 0.25))
    assert CompressionSettings.from_pipeline_config(cfg, 0.5).target_mb == 0.25


def test_eval_cli_overrides_restorer_and_stages():
    from nifi_ns.cli.ns_eval import NifiComputeMetrics
    from nifi_ns.nerfstudio.method_configs import nifi_splatfacto_config

    cli = NifiComputeMetrics(load_config=Path("run/config.yml"), restorer_model_path="/models/sd3",
                             restorer_lora_path="w.safetensors", eval_stages=("compressed",))
    cfg = cli.apply(nifi_splatfacto_config())
    assert cfg.pipeline.restorer.enabled and cfg.pipeline.restorer.model_path == "/models/sd3"
    assert cfg.pipeline.restorer.lora_path == "w.safetensors" and cfg.pipeline.eval_stages == ("compressed",)
    cfg = NifiComputeMetrics(load_config=Path("run/config.yml"), no_restorer=True).apply(cfg)
    assert not cfg.pipeline.restorer.enabled

    other = nifi_splatfacto_config()
    other.method_name = "splatfacto"
    from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

    other.pipeline = VanillaPipelineConfig()
    with pytest.raises(SystemExit, match="'splatfacto' run"):
        cli.apply(other)


def test_ns_eval_restorer_options_are_taken_from_argv_and_typed():
    from nifi_ns.nerfstudio.eval_options import apply_restorer_options, take_restorer_options
    from nifi_ns.nerfstudio.method_configs import nifi_splatfacto_config

    argv = ["ns-eval", "--load-config", "c.yml", "--pipeline.restorer.lora-path", "x.ckpt",
            "--pipeline.restorer.t0=150", "--output-path", "o.json", "--pipeline.restorer.seed", "None"]
    options = take_restorer_options(argv)
    assert argv == ["ns-eval", "--load-config", "c.yml", "--output-path", "o.json"]  # what ns-eval then parses
    config = apply_restorer_options(nifi_splatfacto_config(), options)
    restorer = config.pipeline.restorer
    assert (restorer.lora_path, restorer.t0, restorer.seed, restorer.enabled) == ("x.ckpt", 150, None, True)
    for bad, message in ((["--pipeline.restorer.t0", "abc"], "must be a number"),
                         (["--pipeline.restorer.backbone", "sd9"], "must be one of sd3, sdturbo"),
                         (["--pipeline.restorer.enabled", "maybe"], "must be True or False")):
        with pytest.raises(SystemExit, match=message):
            apply_restorer_options(nifi_splatfacto_config(), take_restorer_options(["ns-eval", *bad]))
    with pytest.raises(SystemExit, match="needs a value"):
        take_restorer_options(["ns-eval", "--pipeline.restorer.lora-path"])


def test_restorer_stage_config_is_the_restorer_declaration_plus_enabled():
    from dataclasses import fields

    from nifi_ns.nerfstudio.eval_options import apply_restorer_options
    from nifi_ns.nerfstudio.method_configs import nifi_splatfacto_config
    from nifi_ns.nerfstudio.restorer_config import NifiRestorerStageConfig
    from nifi_ns.restoration.config import NiFiRestorerConfig

    stage_names = [f.name for f in fields(NifiRestorerStageConfig)]
    assert stage_names == [f.name for f in fields(NiFiRestorerConfig)] + ["enabled"]
    stage = NifiRestorerStageConfig(lora_path="w.ckpt", t0=150, enabled=True)
    assert stage.restorer_config() == NiFiRestorerConfig(lora_path="w.ckpt", t0=150)
    # a config.yml written before a field existed restores __dict__ without it: the field's default is used
    old = NifiRestorerStageConfig.__new__(NifiRestorerStageConfig)
    old.__dict__.update({"enabled": True, "lora_path": "w.ckpt", "backbone": "sd3", "model_path": None,
                         "prompt_embeds_path": None, "t0": 199, "device": None, "dtype": "bfloat16",
                         "batch_size": 4, "seed": 0})
    assert old.restorer_config() == NiFiRestorerConfig(lora_path="w.ckpt")
    with pytest.raises(SystemExit, match="--pipeline.restorer.extra is a mapping"):
        apply_restorer_options(nifi_splatfacto_config(), {"extra": "a=1"})


def test_compression_drops_nonfinite_gaussians_and_the_rest_still_code(caplog):
    """A trained model with a few NaN / inf Gaussians (an optimiser step can leave them) still compresses: they are
    dropped with a warning and counted, and the codec gets only finite input; all-non-finite is a clear error."""
    from nifi_ns.codec import compress, decompress
    from nifi_ns.nerfstudio.compression import without_nonfinite

    splat = GaussianSplat.random(200, sh_degree=1, seed=3)
    splat.means[[5, 17]] = np.nan
    splat.features_rest[40, 0, 1] = np.inf
    with pytest.raises(ValueError, match="non-finite values in means"):
        compress(splat, rate=0.5)
    with caplog.at_level("WARNING", logger="nifi_ns.nerfstudio.compression"):
        kept, dropped = without_nonfinite(splat, "trained model")
    assert dropped == 3 and kept.num_gaussians == 197
    assert "dropping 3 of 200 Gaussians of the trained model" in caplog.text
    assert decompress(compress(kept, rate=0.5)).num_gaussians == 197

    clean, none_dropped = without_nonfinite(kept, "fine-tuned Gaussians")
    assert none_dropped == 0 and clean is kept
    splat.opacities[:] = np.nan
    with pytest.raises(ValueError, match="every one of the 200 Gaussians"):
        without_nonfinite(splat, "trained model")


def test_staged_pruning_budgets_step_down_to_the_budget():
    from nifi_ns.nerfstudio.compression import stage_budgets

    assert stage_budgets(1000, 100, 1, 2.0) == [100]
    assert stage_budgets(1000, 100, 2, 2.0) == [200, 100]
    assert stage_budgets(1000, 100, 3, 4.0) == [400, 200, 100]
    assert stage_budgets(150, 100, 3, 4.0) == [150, 122, 100]  # never more than the model has
    assert stage_budgets(100, 100, 3, 2.0) == [100]  # nothing to cut gradually
    with pytest.raises(ValueError, match="prune_stages=0"):
        stage_budgets(1000, 100, 0, 2.0)
    with pytest.raises(ValueError, match="prune_start=0.5"):
        stage_budgets(1000, 100, 2, 0.5)


def test_containers_of_older_versions_are_not_recompressed_for_new_default_fields():
    from dataclasses import asdict

    from nifi_ns.nerfstudio.compression import CompressionSettings
    from nifi_ns.nerfstudio.nifi_pipeline import NifiPipelineConfig, _same_settings

    settings = CompressionSettings.from_pipeline_config(NifiPipelineConfig(), 0.5)
    older = {k: v for k, v in asdict(settings).items() if k not in ("prune_stages", "prune_start")}
    assert _same_settings(older, settings)  # written before the staged pruning existed: same behaviour
    staged = CompressionSettings.from_pipeline_config(NifiPipelineConfig(prune_stages=3), 0.5)
    assert staged.prune_stages == 3 and not _same_settings(older, staged)
    assert not _same_settings(None, settings)
    # a field whose default differs from what the code did before it existed: such containers are remade
    before_lpips = {k: v for k, v in asdict(settings).items() if not k.startswith("finetune_lpips")}
    no_term = CompressionSettings.from_pipeline_config(NifiPipelineConfig(finetune_lpips_weight=0.0), 0.5)
    assert _same_settings(before_lpips, no_term)
    with_term = CompressionSettings.from_pipeline_config(NifiPipelineConfig(finetune_lpips_weight=0.05), 0.5)
    assert not _same_settings(before_lpips, with_term)
    # SH-degree-0 models' colours are coded as SH DC since 2026-12-05: their older containers are remade, others kept
    from nifi_ns.nerfstudio.method_configs import nifi_splatfacto_config

    pipeline = nifi_splatfacto_config().pipeline
    before_sh_dc = {k: v for k, v in asdict(settings).items() if k != "degree0_colours_as_sh_dc"}
    assert _same_settings(before_sh_dc, CompressionSettings.from_pipeline_config(pipeline, 0.5))  # degree 3
    pipeline.model.sh_degree = 0
    degree0 = CompressionSettings.from_pipeline_config(pipeline, 0.5)
    assert degree0.degree0_colours_as_sh_dc and not _same_settings(before_sh_dc, degree0)

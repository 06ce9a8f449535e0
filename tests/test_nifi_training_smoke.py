"""CPU smoke of scripts/train_nifi.py on fox pairs (synthetic degradation) with tiny random SD3 models."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import FOX_IMAGES_4 as FOX
from conftest import load_script


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    if not FOX.is_dir():
        pytest.skip(f"fox images not found at {FOX} (../shared/data absent)")
    from nifi_ns.training.synthetic_pairs import write_synthetic_pairs

    return write_synthetic_pairs(FOX, tmp_path_factory.mktemp("pairs") / "pairs", rates=("0.1", "1.0"), max_images=9,
                                 caption="a small fox figurine on a table")


def test_pairs_layout_and_reader(pairs):
    from nifi_ns.training.data import scan_pairs

    train, test = scan_pairs(pairs, "train"), scan_pairs(pairs, "test")
    assert len(train) == 2 * 7 and len(test) == 2 * 2  # every 8th image is held out, two rates
    assert {r.rate for r in train} == {"0.1", "1.0"} and {r.scene for r in train} == {"fox"}
    assert all(r.caption == "a small fox figurine on a table" for r in train)
    assert len(scan_pairs(pairs, "train", rates=["1"])) == 7  # labels compare numerically


@pytest.fixture(scope="module")
def smoke_run(pairs, tmp_path_factory) -> Path:
    """One uninterrupted 4-step smoke run, shared (copied) by the tests below."""
    exp = tmp_path_factory.mktemp("runs") / "smoke"
    assert load_script("train_nifi").main(["--data_root", str(pairs), "--exp", str(exp), "--smoke_test"]) == 0
    return exp


def test_train_smoke_writes_all_outputs_and_resumes(pairs, smoke_run, tmp_path):
    import shutil

    train = load_script("train_nifi")
    exp = tmp_path / "runs" / "smoke"
    shutil.copytree(smoke_run, exp)
    for sub in ("latest", "best"):
        assert (exp / f"{sub}.pt").is_file(), f"{sub}.pt"  # the NiFi guide's runs/<exp>/{latest,best}.pt
        for f in ("phi_minus.safetensors", "phi_plus.safetensors", "prompt_embeds.safetensors", "nifi_restorer.json"):
            assert (exp / sub / f).is_file(), f"{sub}/{f}"
    rows = list(csv.DictReader((exp / "train_log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(float(r["loss_generator"]) > 0 and float(r["loss_critic"]) > 0 for r in rows)
    summary = json.loads((exp / "train_summary.json").read_text())
    assert summary["steps_completed"] == 4 and summary["backbone"] == "sd3"
    assert summary["sigma_t0"] == pytest.approx(0.198, abs=1e-3)
    assert summary["best"]["step"] in (2, 4) and summary["best"]["val_lpips"] > 0
    assert summary["config"]["model"]["guidance_scale"] == 7.5 and summary["config"]["loss_weights"]["alpha"] == 0.7
    ckpt = torch.load(exp / "latest.pt", map_location="cpu", weights_only=True)
    state = ckpt["training_state"]
    assert state["step"] == 4 and "state" in state["opt_minus"] and "state" in state["opt_plus"]
    assert set(ckpt["loras"]) == {"phi_minus", "phi_plus"} and ckpt["restorer"]["t0"] == 199
    meta = json.loads((exp / "best" / "nifi_restorer.json").read_text())
    assert meta["backbone"] == "sd3" and meta["t0"] == 199
    assert summary["outputs"]["best.pt"] == str(smoke_run / "best.pt")  # written by the shared run

    # best.pt and the best/ folder hold the same trained restorer
    from nifi_ns.restoration.restorer import load_restorer

    x = torch.rand(1, 3, 32, 48)
    from_pt, from_dir = (load_restorer(str(exp / "best.pt"), device="cpu"),
                         load_restorer(str(exp / "best"), device="cpu"))
    assert from_pt.backbone.has_adapter("phi_minus") and not from_pt.backbone.has_adapter("phi_plus")
    assert torch.equal(from_pt.restore(x), from_dir.restore(x))
    # ns-eval's route (--pipeline.restorer.lora-path best.pt): the checkpoint's prompt embedding is used, so a base
    # model folder without any text encoder suffices
    import shutil

    from nifi_ns.restoration.config import NiFiRestorerConfig
    from nifi_ns.restoration.restorer import NiFiRestorer

    stripped = tmp_path / "sd3_without_text_encoders"
    shutil.copytree(exp / "tiny_sd3", stripped)
    for sub in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        shutil.rmtree(stripped / sub)
    lora_only = NiFiRestorer(NiFiRestorerConfig(model_path=str(stripped), lora_path=str(exp / "best.pt"), device="cpu"))
    assert torch.equal(lora_only.restore(x), from_pt.restore(x))

    assert train.main(["--data_root", str(pairs), "--exp", str(exp), "--smoke_test", "--resume",
                       "--max_steps", "5"]) == 0
    rows = list(csv.DictReader((exp / "train_log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert json.loads((exp / "train_summary.json").read_text())["resumed_from_step"] == 4
    assert torch.load(exp / "latest.pt", map_location="cpu", weights_only=True)["training_state"]["step"] == 5


def test_resume_and_load_errors_name_the_file(pairs, tmp_path, capsys):
    from nifi_ns.restoration.checkpoint import CheckpointError
    from nifi_ns.restoration.restorer import load_restorer

    train = load_script("train_nifi")
    assert train.main(["--data_root", str(pairs), "--exp", str(tmp_path / "fresh"), "--smoke_test", "--resume"]) == 2
    assert "latest.pt' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "fresh").exists()  # nothing written (not even the tiny model)
    foreign = tmp_path / "foreign.pt"
    torch.save({"step": 1}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt' is not a NiFi training checkpoint"):
        load_restorer(str(foreign), device="cpu")


def test_train_rejects_bad_layout_and_config(tmp_path, capsys):
    train = load_script("train_nifi")
    bad = tmp_path / "pairs" / "scene" / "rate_0.1" / "train"
    (bad / "clean").mkdir(parents=True)
    assert train.main(["--data_root", str(tmp_path / "pairs"), "--exp", str(tmp_path / "exp"), "--smoke_test"]) == 2
    assert "has no 'degraded/' folder" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists()  # no partial output
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("train:\n  batch_sise: 4\n")
    assert train.main(["--config", str(cfg), "--data_root", str(tmp_path), "--exp", str(tmp_path / "e2")]) == 2
    assert "batch_sise" in capsys.readouterr().err


def test_default_config_holds_the_paper_hyperparameters():
    from nifi_ns.training.config import default_config_path, load_config

    cfg = load_config(default_config_path())
    assert (cfg.model.guidance_scale, cfg.model.lora_rank, cfg.diffusion.t0) == (7.5, 64, 199)
    assert (cfg.train.batch_size, cfg.train.max_steps) == (4, 60000)
    assert (cfg.train.lr_phi_minus, cfg.train.lr_phi_plus, cfg.train.weight_decay,
            cfg.train.grad_clip) == (5e-6, 1e-6, 1e-4, 1.0)
    assert (cfg.loss_weights.alpha, cfg.model.prompt_dropout, cfg.model.backbone) == (0.7, 0.1, "sd3")


def test_killed_and_resumed_run_reproduces_the_uninterrupted_one(pairs, smoke_run, tmp_path, monkeypatch):
    """Killed during step 4 (latest.pt at step 2, log rows 1-3, a save's temporaries left behind), then resumed:
    the log and every loss equal the uninterrupted run's (RNG states and data order are checkpointed)."""
    from nifi_ns.training.trainer import NiFiTrainer

    train = load_script("train_nifi")
    exp, tiny = tmp_path / "killed", str(smoke_run / "tiny_sd3")
    args = ["--data_root", str(pairs), "--exp", str(exp), "--smoke_test", "--model_path", tiny]
    real, calls = NiFiTrainer.generator_step, []

    def killed_at_step_4(self, *a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(NiFiTrainer, "generator_step", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train.main(args)
    monkeypatch.undo()
    assert [int(r["step"]) for r in csv.DictReader((exp / "train_log.csv").open())] == [1, 2, 3]
    assert torch.load(exp / "latest.pt", map_location="cpu", weights_only=True)["training_state"]["step"] == 2
    meta = json.loads((exp / "latest" / "nifi_restorer.json").read_text())
    (exp / "latest" / "nifi_restorer.json").write_text(json.dumps({**meta, "step": 3}))  # folder ahead of the .pt
    (exp / ".latest.tmp").mkdir()
    (exp / ".latest.pt.tmp").write_bytes(b"half a checkpoint")

    assert train.main([*args, "--resume"]) == 0
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    resumed = drop(csv.DictReader((exp / "train_log.csv").open()))
    uninterrupted = drop(csv.DictReader((smoke_run / "train_log.csv").open()))
    assert [int(r["step"]) for r in resumed] == [1, 2, 3, 4]
    assert resumed == uninterrupted
    assert not (exp / ".latest.tmp").exists() and not (exp / ".latest.pt.tmp").exists()
    assert json.loads((exp / "latest" / "nifi_restorer.json").read_text())["step"] == 4

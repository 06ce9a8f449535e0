"""difix-make-pairs and difix-train on CPU: pairs from real fox splatfacto runs (tiny images, a few steps), resume,
training a tiny random-weight Difix (also under ``accelerate launch --num_processes 2``), loading the result, and
the bad-input errors. The tiny model proves plumbing, not quality.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from conftest import FOX

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.skipif(not (FOX / "transforms.json").exists(), reason=f"fox data not found at {FOX}")


@pytest.fixture(scope="module")
def fox_tiny(tmp_path_factory) -> Path:
    """Eight spread-out fox frames at 1/16 of the original resolution (120x67)."""
    root = tmp_path_factory.mktemp("fox_tiny")
    meta = json.loads((FOX / "transforms.json").read_text())
    meta["frames"] = meta["frames"][::6][:8]
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        meta[key] = meta[key] / 4
    (root / "images_4").mkdir()
    for f in meta["frames"]:
        name = Path(f["file_path"]).name
        img = Image.open(FOX / "images_4" / name)
        img.resize((img.width // 4, img.height // 4), Image.LANCZOS).save(root / "images_4" / name)
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def pairs_config(scene: Path, out: Path):
    from difix_ns.training.pairs import MakePairsConfig
    from difix_ns.training.splat_runs import SplatSettings

    return MakePairsConfig(
        scene=scene, out=out, steps=4, recipes=("sparse", "underfit"), sparse_every=2, underfit_fractions=(0.5,),
        test_every=3, splat=SplatSettings(num_random=200, sh_degree=0, downscale_factor=4, device="cpu"),
    )


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, fox_tiny) -> tuple[Path, dict]:
    from difix_ns.training.pairs import make_pairs

    out = tmp_path_factory.mktemp("pairs")
    summary = make_pairs(pairs_config(fox_tiny, out))
    return out, summary


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pairs) -> tuple[Path, dict, dict]:
    """One step, then a resumed run to step 2."""
    from difix_ns.training.trainer import LossConfig, TrainConfig, train

    out = tmp_path_factory.mktemp("fixer")
    cfg = TrainConfig(out=out, data=(pairs[0] / "pairs.json",), architecture="tiny", max_steps=1, batch_size=2,
                      crop=64, lr=1e-3, eval_every=1, eval_pairs=2, checkpoint_every=1, num_workers=0,
                      loss=LossConfig(lpips_net="alex"))
    first = train(cfg)
    cfg.max_steps = 2
    second = train(cfg)
    return out, first, second


def test_make_pairs_writes_upstream_json_and_pngs(pairs):
    out, summary = pairs
    data = json.loads((out / "pairs.json").read_text())
    assert set(data) == {"train", "test"}
    assert data["train"] and data["test"]
    assert set(summary["recipes"]) == {"sparse", "underfit"}
    assert summary["runs_done"] == ["sparse2_o0", "underfit"]
    for entries in data.values():
        for pid, e in entries.items():
            assert e["prompt"] == "remove degradation" and e["recipe"] in ("sparse", "underfit")
            sizes = {Image.open(out / e[k]).size for k in ("image", "target_image", "ref_image")}
            assert len(sizes) == 1, (pid, sizes)
            assert e["ref_image"] != e["target_image"]  # the nearest *other* clean view
            if e["recipe"] == "underfit":
                assert e["step"] == 2 and e["steps"] == 4
    # sparse renders only views it did not train on; every 2nd of the 8 frames trained
    sparse = [e for d in data.values() for e in d.values() if e["recipe"] == "sparse"]
    assert len(sparse) == 4
    # the renders are real splatfacto output, not copies of the photos
    e = sparse[0]
    render = torch.from_numpy(np.asarray(Image.open(out / e["image"]), dtype=np.float32))
    photo = torch.from_numpy(np.asarray(Image.open(out / e["target_image"]), dtype=np.float32))
    assert (render - photo).abs().mean() > 1.0


def test_splat_settings_reach_splatfacto(fox_tiny, tmp_path):
    """The pair runs' splatfacto config carries the settings (random-init cube, Gaussians, SH degree, schedule)."""
    from difix_ns.training.splat_runs import SplatSettings, _build_config

    settings = SplatSettings(num_random=123, random_scale=2.5, sh_degree=1, device="cpu")
    config = _build_config(fox_tiny, tmp_path, "run", 10, settings)
    model = config.pipeline.model
    assert (model.num_random, model.random_scale, model.sh_degree, config.max_num_iterations) == (123, 2.5, 1, 10)


def test_plan_runs_cross_and_holdout(fox_tiny, tmp_path):
    """Which views each recipe trains on and renders (the splatfacto part is covered above)."""
    from difix_ns.training.pairs import plan_runs
    from difix_ns.training.scenes import holdout_split, load_scene

    cfg = pairs_config(fox_tiny, tmp_path)
    cfg.recipes, cfg.cross_blocks, cfg.holdout, cfg.holdout_interval = ("cross", "holdout", "sparse"), 3, "interval", 4
    scene = load_scene(fox_tiny, tmp_path)
    usable, held = holdout_split(scene.frames, cfg.holdout, cfg.holdout_fraction, cfg.holdout_interval)
    assert [f.index for f in held] == [0, 4]  # nerfstudio's interval split
    plans = {p.run_id: p for p in plan_runs(cfg, usable, held)}
    assert set(plans) == {"sparse2_o0", "cross3_b0", "cross3_b1", "cross3_b2", "holdout"}
    for p in plans.values():
        trained = {f.index for f in p.train}
        assert not trained & {0, 4}  # held-out views never train
        if p.recipe == "cross":
            pos = sorted(usable.index(f) for f in p.render)  # a contiguous block of the usable trajectory
            assert pos == list(range(pos[0], pos[-1] + 1)) and not trained & {f.index for f in p.render}
    assert sorted(f.index for f in plans["holdout"].render) == [0, 4]


def test_make_pairs_resume_skips_finished_runs(pairs, fox_tiny):
    from difix_ns.training.pairs import make_pairs

    out, first = pairs
    stamps = {p: p.stat().st_mtime_ns for p in (out / "renders").rglob("*.png")}
    before = json.loads((out / "pairs.json").read_text())
    again = make_pairs(pairs_config(fox_tiny, out))
    assert again["runs_done"] == [] and again["runs_skipped"] == first["runs_done"]
    assert json.loads((out / "pairs.json").read_text()) == before
    assert {p: p.stat().st_mtime_ns for p in (out / "renders").rglob("*.png")} == stamps


def test_train_resumes_and_exports_loadable_model(trained):
    out, first, second = trained
    assert first["step"] == 1 and second["step"] == 2
    rows = (out / "eval.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    assert sorted(d.name for d in (out / "checkpoints").iterdir()) == ["step_00000001", "step_00000002"]
    assert json.loads((out / "checkpoints" / "step_00000002" / "trainer_state.json").read_text())["step"] == 2
    assert not list((out / "checkpoints").glob(".tmp*"))
    assert list((out / "tensorboard").iterdir())

    from difix_ns.pipeline_difix import DifixPipeline

    pipe = DifixPipeline.from_pretrained(out / "model")
    assert pipe.reference_mixing
    index = json.loads((out / "model" / "model_index.json").read_text())
    assert index["unet"][0] == "unet_2d_condition" and index["vae"] == ["autoencoder_kl", "AutoencoderKL"]
    # the exported weights are the trained ones, not the initial ones
    from difix_ns.training.architectures import build_from_scratch

    init = build_from_scratch("tiny", seed=0)
    trained_w = pipe.unet.state_dict()["conv_in.weight"]
    assert not torch.equal(trained_w, init.unet.state_dict()["conv_in.weight"])

    # the ns-train option resolves to this folder and the fixer built from it runs
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    from difix_ns.fixer import DifixFixer

    config = tyro.cli(AnnotatedBaseConfigUnion, args=["difix3d-splatfacto", "--pipeline.fixer.model-name",
                                                      str(out / "model")])
    fixer = DifixFixer(config.pipeline.fixer)
    y = fixer.fix(torch.rand(1, 3, 72, 128), torch.rand(1, 1, 3, 72, 128))
    assert y.shape == (1, 3, 72, 128) and torch.isfinite(y).all()


def _bad(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_bad_inputs_give_one_clear_error(tmp_path, capsys):
    from difix_ns.cli.train import main

    Image.new("RGB", (96, 64)).save(tmp_path / "a.png")
    Image.new("RGB", (96, 64)).save(tmp_path / "b.png")
    Image.new("RGB", (80, 64)).save(tmp_path / "c.png")
    ok = {"image": "a.png", "target_image": "b.png", "ref_image": "b.png", "prompt": "remove degradation"}
    cases = {
        "missing": ({"train": {"x": dict(ok, image="nope.png")}, "test": {"y": ok}}, "nope.png' does not exist"),
        "size": ({"train": {"x": dict(ok, target_image="c.png")}, "test": {"y": ok}}, "size mismatch"),
        "empty": ({"train": {}, "test": {"y": ok}}, "'train' split"),
        "empty_test": ({"train": {"x": ok}, "test": {}}, "'test' split"),
    }
    for name, (data, needle) in cases.items():
        out = tmp_path / f"out_{name}"
        with pytest.raises(SystemExit) as err:
            main(["--data", str(_bad(tmp_path, name, data)), "--architecture", "tiny", "--out", str(out)])
        assert err.value.code == 2, name
        message = capsys.readouterr().err
        assert needle in message and message.count("error:") == 1, (name, message)
        assert not out.exists(), name  # nothing written
    with pytest.raises(SystemExit) as err:
        main(["--data", str(tmp_path / "a.png"), "--out", str(tmp_path / "o")])
    assert err.value.code == 2 and "exactly one of --model-name" in capsys.readouterr().err

    from difix_ns.cli.make_pairs import main as make_pairs_main

    with pytest.raises(SystemExit) as err:
        make_pairs_main(["--scene", str(tmp_path), "--out", str(tmp_path / "p")])
    assert err.value.code == 2 and "neither transforms.json" in capsys.readouterr().err


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_unet_lora(tmp_path, pairs):
    """Two CPU processes (gloo) training a PEFT LoRA on the UNet; the export has the plain HF layout."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "difix_ns.cli.train",
           "--data", str(pairs[0] / "pairs.json"), "--architecture", "tiny", "--out", str(out), "--max-steps", "2",
           "--batch-size", "1", "--crop", "64", "--eval-every", "0", "--eval-pairs", "1", "--num-workers", "0",
           "--loss.lpips", "0", "--unet-lora-rank", "2", "--trainable", "upstream"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               TMPDIR=str(tmp_path))  # torch's elastic launcher leaves its log folder in the temporary directory
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["num_processes"] == 2 and summary["step"] == 2
    assert (out / "checkpoints" / "step_00000002" / "random_states_1.pkl").is_file()
    from difix_ns.pipeline_difix import DifixPipeline

    pipe = DifixPipeline.from_pretrained(out / "model")  # strict load: the UNet LoRA was merged on export
    assert pipe.reference_mixing and not any("lora" in k for k in pipe.unet.state_dict())

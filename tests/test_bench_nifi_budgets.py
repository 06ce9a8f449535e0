"""bench_nifi_splatfacto.py --budgets-from: the budget-trained rows alone, from an earlier run's JSON (CPU smoke scale:
random-init Gaussians, a few steps, so the numbers mean nothing; the rows, budgets and files are what is checked)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import load_script


def bench():
    return load_script("bench_nifi_splatfacto")


def source_json(path: Path) -> Path:
    """An earlier run's JSON as the benchmark writes it (the fields --budgets-from reads, plus the ones it copies).
    Budgets under the smoke run's 300 random Gaussians, so the cap has to remove some; largest budget listed first."""
    metrics = {"psnr": 20.0, "ssim": 0.5, "lpips": 0.4}
    path.write_text(json.dumps({
        "scene": "fox", "downscale_factor": 4, "uncompressed": {"psnr": 25.0, "ssim": 0.7, "lpips": 0.3},
        "nifi": [{"label": "rate_0.5", "size_mb": 0.006, "num_gaussians": 300, "metrics": metrics},
                 {"label": "rate_1.0", "size_mb": 0.004, "num_gaussians": 300, "metrics": metrics}],
        "png_same_gaussians": [{"label": "rate_0.5", "size_mb": 0.0058, "kept": 210, "metrics": metrics},
                               {"label": "rate_1.0", "size_mb": 0.0039, "kept": 130, "metrics": metrics}],
        "png_budget_trained": [], "errors": {},
    }))
    return path


def test_budgets_from_trains_only_the_budget_rows(fox_dir, tmp_path):
    source = source_json(tmp_path / "earlier.json")
    out, renders = tmp_path / "out", tmp_path / "renders"
    args = ["--smoke-cpu", "--data", str(fox_dir), "--budgets-from", str(source), "--out", str(out)]

    assert bench().main(args + ["--save-renders", str(renders)]) == 0

    result = json.loads((out / "bench_nifi_splatfacto.json").read_text())
    rows = result["png_budget_trained"]
    assert [(r["label"], r["budget"]) for r in rows] == [("rate_1.0", 130), ("rate_0.5", 210)]  # smallest first
    for row in rows:
        assert 0 < row["num_gaussians"] <= row["budget"] and row["train_steps"] == 6 and row["size_mb"] > 0
        assert row["sh_degree"] == 0  # PngCompression keeps the DC colours only: trained at degree 0 by default
        for scored in (row["metrics"], row["metrics_before_png"]):  # after coding, and the capped model itself
            assert {"psnr", "ssim", "lpips"} <= set(scored)
            assert all(math.isfinite(v) for v in scored.values())
        assert len(list((renders / f"png_budget_trained__{row['label']}").glob("*.png"))) == result["eval_images"]
    assert result["eval_images"] == len(list((renders / "photos").glob("*.png"))) == 2  # 6 views, every 3rd held out
    assert result["budget_sh_degree"] == 0
    from nerfstudio.configs.method_configs import method_configs

    assert method_configs["splatfacto"].pipeline.model.sh_degree == 3  # nerfstudio's registered default untouched
    assert "nifi" not in result and "png_same_gaussians" not in result  # no nifi-splatfacto model was trained
    copied = result["budgets_from"]
    assert copied["file"] == str(source) and copied["uncompressed"]["psnr"] == 25.0
    assert [(r["label"], r["size_mb"]) for r in copied["nifi"]] == [("rate_0.5", 0.006), ("rate_1.0", 0.004)]
    assert [(r["label"], r["kept"], r["metrics"]["psnr"]) for r in copied["png_same_gaussians"]] == [
        ("rate_1.0", 130, 20.0), ("rate_0.5", 210, 20.0)]
    assert not [k for k in result["errors"] if k.startswith("budget_")]
    assert (out / "bench_nifi_splatfacto.png").is_file()

    # the same --out again: refused without --overwrite, the JSON left alone
    before = (out / "bench_nifi_splatfacto.json").read_text()
    with pytest.raises(SystemExit, match="already exists; pass --overwrite"):
        bench().main(args)
    assert (out / "bench_nifi_splatfacto.json").read_text() == before

    # past --deadline-s before the first budget: every budget is skipped and named, the JSON is still written
    late = tmp_path / "late"
    assert bench().main(args[:-1] + [str(late), "--deadline-s", "0"]) == 0
    result = json.loads((late / "bench_nifi_splatfacto.json").read_text())
    assert result["png_budget_trained"] == []
    assert result["errors"] == {"budget_rate_1.0": "skipped: past --deadline-s 0.0",
                                "budget_rate_0.5": "skipped: past --deadline-s 0.0"}


def test_budgets_from_rejects_bad_input_before_writing(tmp_path):
    out = tmp_path / "out"
    data = tmp_path / "fox"
    data.mkdir()
    (data / "transforms.json").write_text("{}")
    base = ["--data", str(data), "--out", str(out), "--budget-steps", "10"]
    not_json = tmp_path / "notes.json"
    not_json.write_text("budgets: 1, 2")
    no_kept = tmp_path / "cut.json"
    no_kept.write_text(json.dumps({"nifi": [{"label": "rate_1.0", "size_mb": 0.2}], "png_same_gaussians": []}))
    bad_row = tmp_path / "bad_row.json"
    bad_row.write_text(json.dumps({"png_same_gaussians": [{"label": "rate_1.0", "size_mb": 0.2}]}))
    other_scene = source_json(tmp_path / "castle.json")  # measured on "fox" at x4

    for path, message in ((tmp_path / "missing.json", "missing.json does not exist"),
                          (not_json, "notes.json is not a JSON file"),
                          (no_kept, "cut.json has no png_same_gaussians rows"),
                          (bad_row, "bad_row.json: png_same_gaussians row .* has no label and Gaussian count")):
        with pytest.raises(SystemExit, match=message):
            bench().main(base + ["--budgets-from", str(path)])
    with pytest.raises(SystemExit, match="measured at --downscale-factor 4, not 2"):
        bench().main(base + ["--budgets-from", str(other_scene)])
    castle = tmp_path / "castle-P30"
    castle.mkdir()
    (castle / "transforms.json").write_text("{}")
    with pytest.raises(SystemExit, match="measured on fox, not --data"):
        bench().main(["--data", str(castle), "--out", str(out), "--budget-steps", "10", "--downscale-factor", "4",
                      "--budgets-from", str(other_scene)])
    with pytest.raises(SystemExit, match="give --budget-steps > 0"):
        bench().main(["--data", str(data), "--out", str(out), "--budgets-from", str(other_scene)])
    with pytest.raises(SystemExit, match="--budget-sh-degree 4: splatfacto supports SH degrees 0 to 3"):
        bench().main(base + ["--budgets-from", str(source_json(tmp_path / "fox.json")), "--budget-sh-degree", "4"])
    assert not out.exists()

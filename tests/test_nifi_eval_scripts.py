"""eval_nifi.py / eval_benchmark_nifi.py schemas and the data scripts' offline behaviour (CPU, tiny models)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FOX, load_script


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    if not (FOX / "images_4").is_dir():
        pytest.skip(f"fox images not found at {FOX} (../shared/data absent)")
    from nifi_ns.training.synthetic_pairs import write_synthetic_pairs

    root = tmp_path_factory.mktemp("eval")
    pairs = write_synthetic_pairs(FOX / "images_4", root / "pairs", rates=("0.1", "1.0"), max_images=9)
    exp = root / "runs" / "smoke"
    assert load_script("train_nifi").main(["--data_root", str(pairs), "--exp", str(exp), "--smoke_test",
                                           "--max_steps", "1"]) == 0
    return pairs, exp


def test_eval_nifi_schema(trained, tmp_path):
    pairs, exp = trained
    out = tmp_path / "metrics.json"
    # the NiFi guide's command: --ckpt runs/<exp>/best.pt
    assert load_script("eval_nifi").main(["--ckpt", str(exp / "best.pt"), "--data_root", str(pairs), "--split", "test",
                                          "--out", str(out), "--device", "cpu", "--rates", "1.0",
                                          "--save_images", str(tmp_path / "restored")]) == 0
    data = json.loads(out.read_text())
    agg = data["metrics"]["aggregate"]
    for key in ("lpips_before", "lpips_after", "dists_before", "dists_after", "psnr_before", "psnr_after",
                "ssim_before", "ssim_after"):
        assert isinstance(agg[key], float), key
    assert agg["count"] == 2 and len(data["records"]) == 2 and data["lpips_net"] == "alex"
    rec = data["records"][0]
    assert rec["rate"] == "1.0" and rec["scene"] == "fox" and 0 < rec["lpips_before"] < 1
    assert Path(rec["restored"]).is_file()
    assert agg["lpips_delta"] == pytest.approx(agg["lpips_after"] - agg["lpips_before"])
    assert data["sigma_t0"] == pytest.approx(0.198, abs=1e-3) and data["backbone"] == "sd3"
    assert set(data["metrics"]["per_scene"]) == {"default/fox"}
    # the smoke checkpoint sits on a tiny random backbone: the JSON says so next to the numbers
    assert data["plumbing_only"] is True and "plumbing, not quality" in data["note"]


def test_eval_benchmark_schema_and_paper_comparison(trained, tmp_path):
    pairs, exp = trained
    bench = tmp_path / "benchmarks"
    shutil.copytree(pairs / "fox" / "rate_0.1", bench / "mipnerf360" / "fox" / "rate_0.1")
    shutil.copytree(pairs / "fox" / "rate_1.0", bench / "mystery" / "fox" / "rate_1.0")
    out = tmp_path / "benchmark_metrics.json"
    assert load_script("eval_benchmark_nifi").main(["--ckpt", str(exp / "best.pt"), "--data_root", str(bench), "--out",
                                                    str(out), "--device", "cpu", "--max_images", "3"]) == 0
    data = json.loads(out.read_text())
    s = data["summary"]
    assert set(s) >= {"aggregate", "per_dataset", "per_dataset_rate", "per_scene"}
    assert set(s["per_dataset"]) == {"mipnerf360", "mystery"}
    assert set(s["per_dataset_rate"]) == {"mipnerf360/0.1", "mystery/1.0"}
    assert s["aggregate"]["count"] == 3
    assert data["plumbing_only"] is True and "plumbing, not quality" in data["note"]
    cmp_ = data["paper_comparison"]
    assert cmp_["unmatched_groups"] == ["mystery/1.0"] and len(cmp_["entries"]) == 1
    entry = cmp_["entries"][0]
    assert (entry["paper_nifi_lpips"], entry["paper_nifi_dists"]) == (0.178, 0.109)  # Table 1, Mip-NeRF360 λ=0.1
    assert entry["delta_lpips_after_vs_paper"] == pytest.approx(
        s["per_dataset_rate"]["mipnerf360/0.1"]["lpips_after"] - 0.178)


def test_eval_rejects_bad_input_without_output(trained, tmp_path, capsys):
    pairs, exp = trained
    out = tmp_path / "m.json"
    assert load_script("eval_nifi").main(["--ckpt", str(tmp_path / "nope"), "--data_root", str(pairs), "--out",
                                          str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert load_script("eval_nifi").main(["--ckpt", str(exp / "best"), "--data_root", str(pairs), "--split", "val",
                                          "--out", str(out)]) == 2
    assert "no 'val' pairs" in capsys.readouterr().err
    assert not out.exists()


def test_download_scripts_validate_and_instruct(tmp_path, capsys):
    bench = load_script("download_benchmark_data")
    assert bench.main(["--dataset", "all", "--out", str(tmp_path / "bm")]) == 1
    err = capsys.readouterr().err
    assert "360_v2.zip" in err and "tandt_db.zip" in err and "nothing is downloaded" in err
    assert bench.main(["--dataset", "mipnerf360", "--out", str(tmp_path / "bm"), "--mip_scenes", "moon"]) == 2

    if not FOX.is_dir():
        pytest.skip("fox scene absent")
    src = tmp_path / "local_mip"
    (src / "garden").mkdir(parents=True)
    (src / "garden" / "images_4").symlink_to((FOX / "images_4").resolve())
    assert bench.main(["--dataset", "mipnerf360", "--out", str(tmp_path / "bm"), "--mip_scenes", "garden",
                       "--source", str(src)]) == 2  # images but no poses
    assert "no camera poses" in capsys.readouterr().err
    shutil.copy(FOX / "transforms.json", src / "garden" / "transforms.json")
    assert bench.main(["--dataset", "mipnerf360", "--out", str(tmp_path / "bm"), "--mip_scenes", "garden",
                       "--source", str(src)]) == 0
    assert json.loads(capsys.readouterr().out)["datasets"]["mipnerf360"]["ok"] == ["garden"]

    dl3dv = load_script("download_data")
    assert dl3dv.main(["--dataset", "dl3dv", "--out", str(tmp_path / "data")]) == 1
    assert "DL3DV-10K" in capsys.readouterr().err
    assert dl3dv.main(["--dataset", "dl3dv", "--out", str(tmp_path / "data"), "--dl3dv_source", str(src)]) == 0
    assert (tmp_path / "data" / "dl3dv" / "garden").is_symlink()
    assert dl3dv.main(["--dataset", "dl3dv", "--out", str(tmp_path / "data")]) == 0  # now present


def test_benchmarks_score_against_the_undistorted_photos_ns_eval_uses(tmp_path):
    """fox has lens distortion (k1 = 0.058): the codec benchmarks must score renders against nerfstudio's undistorted
    eval images with the cameras nerfstudio rewrote for them (what ns-eval scores), not the raw, misaligned files."""
    if not (FOX / "images_4").is_dir():
        pytest.skip(f"fox images not found at {FOX} (../shared/data absent)")
    import torch
    from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    meta = json.loads((FOX / "transforms.json").read_text())
    meta["frames"] = meta["frames"][:4]
    (tmp_path / "images_4").mkdir()
    for frame in meta["frames"]:
        name = Path(frame["file_path"]).name
        shutil.copy(FOX / "images_4" / name, tmp_path / "images_4" / name)
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    config = FullImageDatamanagerConfig(data=tmp_path, dataparser=NerfstudioDataParserConfig(
        downscale_factor=4, eval_mode="interval", eval_interval=2, auto_scale_poses=False))
    dm = config.setup(device="cpu", test_mode="test")
    raw = dm.eval_dataset.get_image_float32(0)[..., :3].permute(2, 0, 1)
    raw_width = int(dm.eval_dataset.cameras.width[0])

    cameras, images = load_script("bench_codec_vs_gsplat").eval_views(dm)

    assert len(images) == len(dm.eval_dataset) == 2
    cached = dm.cached_eval[0]["image"][..., :3].permute(2, 0, 1)
    cached = cached.float() / 255.0 if cached.dtype == torch.uint8 else cached.float()
    assert torch.equal(images[0], cached)  # nerfstudio's undistorted photo, in [0, 1]
    assert images[0].shape[1:] == (int(cameras.height[0]), int(cameras.width[0]))  # the rewritten camera's size
    assert images[0].shape != raw.shape and int(cameras.width[0]) < raw_width  # undistortion cropped it


def test_rescore_fills_vgg_metrics_of_the_rows_whose_renders_exist(tmp_path):
    """bench_nifi_splatfacto.py --save-renders + rescore_renders.py: LPIPS-vgg / DISTS land in the right rows (by
    section and label), a perfect render scores ~0, the other metrics are kept, the input JSON is left alone."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    photo = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    noisy = np.clip(photo.astype(int) + rng.integers(-60, 60, photo.shape), 0, 255).astype(np.uint8)
    renders = tmp_path / "renders"
    for folder, image in (("photos", photo), ("uncompressed", photo), ("nifi__rate_1.0", noisy)):
        (renders / folder).mkdir(parents=True)
        Image.fromarray(image).save(renders / folder / "000.png")
    result = {"uncompressed": {"psnr": 40.0}, "errors": {"perceptual_metrics": "no VGG16"},
              "nifi": [{"label": "rate_0.1", "metrics": {"psnr": 30.0}},
                       {"label": "rate_1.0", "metrics": {"psnr": 20.0}}]}
    source = tmp_path / "bench.json"
    source.write_text(json.dumps(result))
    out = tmp_path / "rescored.json"

    assert load_script("rescore_renders").main(["--json", str(source), "--renders", str(renders),
                                                "--out", str(out)]) == 0

    done = json.loads(out.read_text())
    assert json.loads(source.read_text()) == result
    assert done["uncompressed"]["lpips_vgg"] < 1e-3 and done["uncompressed"]["dists"] < 1e-3
    assert done["uncompressed"]["psnr"] == 40.0
    row = done["nifi"][1]["metrics"]
    assert row["lpips_vgg"] > 0.05 and row["dists"] > 0.05 and row["psnr"] == 20.0
    assert "lpips_vgg" not in done["nifi"][0]["metrics"]  # no renders for rate_0.1
    assert "perceptual_metrics" not in done["errors"]
    assert done["rescored"]["device"] == "cpu"  # the JSON says where LPIPS-vgg / DISTS were computed
    with pytest.raises(SystemExit, match="--out"):
        load_script("rescore_renders").main(["--json", str(source), "--renders", str(renders), "--out", str(source)])

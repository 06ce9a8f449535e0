"""Artifact synthesis from a trained splatfacto / nifi-splatfacto run (NiFi's Fig. 2, block 1).

For each rate, the compressed model (the run's own container for nifi-splatfacto; compressed now for a plain
splatfacto run) is rendered at every camera of a split and paired with the dataset photo at that camera. The
photo is the image splatfacto trained against (undistorted by nerfstudio's datamanager, at the run's
downscale), so clean and degraded are pixel-aligned and the same size.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from nifi_ns.synthesis.layout import pair_dirs, rate_label, write_manifest, write_prompt

SPLITS = ("train", "test")


@dataclass
class SynthesisOptions:
    """How to compress when the run holds no container for a rate (plain splatfacto runs)."""

    finetune_steps: int = 200
    importance_views: int = 32
    target_mb: Optional[Sequence[float]] = None  # one per rate, overriding the presets' sizes


def load_run(config_path: Path):
    """`eval_setup` of a run's config.yml (train + test splits in memory); clear error for a bad path."""
    from nerfstudio.utils.eval_utils import eval_setup

    config_path = Path(config_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: no such config.yml (ns-train writes it into the run directory)")
    from difix_ns.safe_config import load_run_config

    load_run_config(config_path, option="config")  # garbage or hostile config.yml: one clear error, nothing runs
    config, pipeline, checkpoint, step = eval_setup(config_path, test_mode="test")
    from nerfstudio.models.splatfacto import SplatfactoModel

    if not isinstance(pipeline.model, SplatfactoModel):
        raise ValueError(f"{config_path}: method {config.method_name!r} is not splatfacto-based; cannot compress it")
    return config, pipeline, checkpoint


def split_size(pipeline, split: str) -> int:
    """Number of images of `split` in the run's dataparser split (no image is loaded)."""
    dm = pipeline.datamanager
    dataset = dm.train_dataset if split == "train" else dm.eval_dataset
    return len(dataset.image_filenames)


def split_views(pipeline, split: str) -> Iterator[Tuple[str, object, torch.Tensor]]:
    """(image stem, camera, photo uint8/float [H, W, C]) for every image of `split` ('train' or 'test')."""
    dm = pipeline.datamanager
    if split == "train":
        cached = dm.cached_train  # loading undistorts and rewrites the dataset cameras' intrinsics in place
        dataset = dm.train_dataset
    elif split == "test":
        cached = dm.cached_eval
        dataset = dm.eval_dataset
    else:
        raise ValueError(f"split {split!r} must be one of {SPLITS}")
    cameras = dataset.cameras.to(pipeline.device)
    for i, name in enumerate(dataset.image_filenames):
        yield Path(name).stem, cameras[i : i + 1], cached[i]["image"]


def containers_for(pipeline, rates: Sequence[float], options: SynthesisOptions) -> Dict[str, Tuple[bytes, dict]]:
    """label -> (container, report): the run's own containers, else compressed now."""
    from nifi_ns.nerfstudio.compression import CompressionSettings, compress_model

    stored = getattr(pipeline, "compressed", {}) or {}
    out = {}
    for i, rate in enumerate(rates):
        label = rate_label(rate)
        if label in stored:
            out[label] = (stored[label]["container"], stored[label]["report"])
            continue
        target = None if not options.target_mb else float(options.target_mb[i])
        settings = CompressionSettings(target, options.finetune_steps, importance_views=options.importance_views)
        out[label] = compress_model(pipeline.model, pipeline.datamanager, rate, settings)
    return out


@torch.no_grad()
def synthesize_pairs(
    config_path: Path,
    out_root: Path,
    rates: Sequence[float] = (0.1, 0.5, 1.0),
    splits: Sequence[str] = SPLITS,
    prompt: Optional[str] = None,
    options: Optional[SynthesisOptions] = None,
) -> dict:
    """Write `<out_root>/rate_<λ>/<split>/{clean,degraded}/<stem>.png` for a run; returns the manifest."""
    from difix_ns.io import save_png
    from nifi_ns.nerfstudio.gaussian_swap import decoded_gaussians, render_view

    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"--split {split!r} must be one of {SPLITS}")
    options = options or SynthesisOptions()
    if options.target_mb and len(options.target_mb) != len(rates):
        raise ValueError(f"--target-mb has {len(options.target_mb)} values for {len(rates)} rates")
    config, pipeline, checkpoint = load_run(config_path)
    empty = [split for split in splits if split_size(pipeline, split) == 0]
    if empty:  # checked before anything is compressed or written
        raise ValueError(f"{config_path}: the run's {empty} split(s) hold no images (the dataparser's train/eval "
                         "split of this scene is empty; use more images or another --eval-mode), no pairs written")
    model = pipeline.model
    model.eval()
    containers = containers_for(pipeline, rates, options)
    out_root = Path(out_root)
    manifest: dict = {
        "source_config": str(Path(config_path).resolve()),
        "checkpoint": str(checkpoint),
        "method_name": config.method_name,
        "rates": {},
    }
    for rate in rates:
        label = rate_label(rate)
        blob, report = containers[label]
        counts: Dict[str, int] = {}
        with decoded_gaussians(model, blob):
            for split in splits:
                dirs = pair_dirs(out_root, rate, split)
                names: List[str] = []
                for stem, camera, photo in split_views(pipeline, split):
                    degraded, clean = render_view(model, camera, photo)
                    if clean.shape != degraded.shape:
                        raise RuntimeError(f"{stem}: photo {tuple(clean.shape)} vs render {tuple(degraded.shape)}")
                    save_png(clean.permute(2, 0, 1), dirs["clean"] / f"{stem}.png")
                    save_png(degraded.permute(2, 0, 1), dirs["degraded"] / f"{stem}.png")
                    names.append(stem)
                counts[split] = len(names)
        manifest["rates"][label] = {
            "rate": float(rate),
            "size_mb": report["size_mb"],
            "num_gaussians": report["num_gaussians"],
            "compression_ratio": report["compression_ratio"],
            "counts": counts,
        }
    if prompt:
        write_prompt(out_root, prompt)
    write_manifest(out_root, _merged(out_root, manifest))
    return manifest


def _merged(out_root: Path, manifest: dict) -> dict:
    """Keep split counts of earlier calls (render_pairs.py writes train and test in two runs)."""
    import json

    from nifi_ns.synthesis.layout import MANIFEST_FILE

    path = Path(out_root) / MANIFEST_FILE
    if not path.is_file():
        return manifest
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        return manifest
    if old.get("source_config") != manifest["source_config"]:
        return manifest
    for label, entry in manifest["rates"].items():
        counts = dict(old.get("rates", {}).get(label, {}).get("counts", {}))
        counts.update(entry["counts"])
        entry["counts"] = counts
    return manifest

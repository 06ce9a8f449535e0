"""Short splatfacto runs inside this process (nerfstudio's own ``Trainer``), rendering chosen views at chosen steps.

On CPU-only machines the project's CPU rasterizer support (``difix_ns.splat``) is installed first, so the same code
runs in the tests; on CUDA it is stock splatfacto with gsplat.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from difix_ns.diffusion.device import default_device_type


@dataclass
class SplatSettings:
    """splatfacto settings of the pair-making runs (stock values unless set)."""

    num_random: int = 50000
    """Random initial Gaussians when the scene has no sparse points."""
    random_scale: float = 10.0
    """Side of the cube (scene units, cameras normalised to about [-1, 1]) the random Gaussians start in (stock 10;
    a smaller cube puts more of them in view, which short runs on scenes without sparse points need)."""
    sh_degree: int = 3
    """Spherical-harmonics degree."""
    num_downscales: int = 0
    """splatfacto's coarse-to-fine image downscales (stock 2 trains the first 3000 steps at 1/4 size, which a short
    schedule never leaves)."""
    downscale_factor: Optional[int] = None
    """nerfstudio-data ``--downscale-factor`` (reads ``images_N/``); None lets nerfstudio pick."""
    device: Optional[str] = None
    """"cuda" or "cpu"; None picks cuda when available."""


# A view to render: (step, "train" | "eval", callback(step, split, file_path, rgb [H,W,3], gt [H,W,3])).
RenderSink = Callable[[int, str, str, torch.Tensor, torch.Tensor], None]


def _build_config(scene_dir: Path, out_dir: Path, name: str, steps: int, settings: SplatSettings):
    import copy

    from difix_ns.nerfstudio_patches import install_cpu_support_if_available

    install_cpu_support_if_available()
    from nerfstudio.configs.method_configs import method_configs
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    config = copy.deepcopy(method_configs["splatfacto"])
    device = settings.device or default_device_type()
    config.machine.device_type = device
    config.machine.num_devices = 1
    config.data = scene_dir
    config.output_dir = out_dir
    config.experiment_name = name
    config.method_name = "splatfacto"
    config.timestamp = "run"
    config.vis = "none"
    config.max_num_iterations = steps
    config.steps_per_eval_batch = 0
    config.steps_per_eval_image = 0
    config.steps_per_eval_all_images = 0
    config.steps_per_save = 10 * steps + 10
    config.save_only_latest_checkpoint = True
    config.load_dir = None
    config.pipeline.datamanager.data = scene_dir
    config.pipeline.datamanager.dataparser = NerfstudioDataParserConfig(
        data=scene_dir, downscale_factor=settings.downscale_factor
    )
    if device == "cpu":
        config.pipeline.datamanager.cache_images = "cpu"
    model = config.pipeline.model
    model.num_random = settings.num_random
    model.random_scale = settings.random_scale
    model.sh_degree = settings.sh_degree
    model.num_downscales = settings.num_downscales
    return config


def _photo(dm, split: str, i: int) -> torch.Tensor:
    """The photo the run trained / evaluated against: nerfstudio's cached image, i.e. *undistorted* for captures
    with lens distortion (the raw file would not be pixel-aligned with the render)."""
    cached = dm.cached_train if split == "train" else dm.cached_eval
    image = cached[i]["image"]
    image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    return image[..., :3].cpu()


@torch.no_grad()
def _render_split(pipeline, split: str, step: int, sink: RenderSink, wanted: Optional[set]) -> None:
    dm = pipeline.datamanager
    dataset = dm.train_dataset if split == "train" else dm.eval_dataset
    # Loading the cache undistorts the images *and* updates the dataset's cameras in place: do it before rendering.
    _ = dm.cached_train if split == "train" else dm.cached_eval
    model = pipeline.model
    was_training = model.training
    model.eval()
    try:
        names = dataset._dataparser_outputs.image_filenames
        device = next(model.parameters()).device
        for i in range(len(dataset)):
            key = Path(names[i]).name
            if wanted is not None and key not in wanted:
                continue
            camera = dataset.cameras[i : i + 1].to(device)
            rgb = model.get_outputs_for_camera(camera)["rgb"].clamp(0, 1).float().cpu()
            gt = _photo(dm, split, i)
            if gt.shape != rgb.shape:
                raise RuntimeError(f"render {tuple(rgb.shape)} and photo {tuple(gt.shape)} of {key} differ in size")
            sink(step, split, key, rgb, gt)
    finally:
        model.train(was_training)


def train_and_render(
    scene_dir: Path,
    out_dir: Path,
    name: str,
    steps: int,
    settings: SplatSettings,
    render_at: Sequence[tuple[int, str]],
    sink: RenderSink,
    wanted: Optional[set] = None,
    clean_sink: Optional[Callable[[str, torch.Tensor], None]] = None,
) -> None:
    """Train splatfacto for ``steps`` on the sub-scene's train split; at each ``(step, split)`` of ``render_at``
    render that split ("train" or "eval") and hand every view to ``sink``. ``step == steps`` renders the final
    model. ``wanted`` (image file names) limits which views are rendered. ``clean_sink(file_name, photo)`` then
    receives every photo of both splits at the resolution the run used."""
    from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

    config = _build_config(scene_dir, out_dir, name, steps, settings)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    schedule: dict[int, list[str]] = {}
    for step, split in render_at:
        schedule.setdefault(int(step), []).append(split)

    def on_step(step: int) -> None:
        done = step + 1  # nerfstudio calls after-iteration callbacks with the 0-based step just finished
        for split in schedule.get(done, []) if done < steps else []:
            _render_split(trainer.pipeline, split, done, sink, wanted)

    # Appended last: runs after splatfacto's own densification callback has consumed this step's render info.
    trainer.callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], on_step))
    trainer.train()
    for split in schedule.get(steps, []):
        _render_split(trainer.pipeline, split, steps, sink, wanted)
    if clean_sink is not None:
        dm = trainer.pipeline.datamanager
        for split, dataset in (("train", dm.train_dataset), ("eval", dm.eval_dataset)):
            names = dataset._dataparser_outputs.image_filenames
            for i in range(len(dataset)):
                clean_sink(Path(names[i]).name, _photo(dm, split, i))
    trainer.callbacks.clear()  # drops the closure's reference; the trainer is freed on return


def release_memory() -> None:
    """Free what a finished run left behind (call after ``train_and_render`` returned)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

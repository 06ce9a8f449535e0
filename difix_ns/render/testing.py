"""Helpers for CPU tests of the Difix3D+ render tools: a tiny fox scene and a few-iteration training run.

A run trained for a handful of iterations from random points renders a nearly flat image; together with a
random-weight fixer that proves plumbing (shapes, panels, frame counts), not quality.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence

CPU_TRAIN_ARGS = [
    "--vis", "tensorboard",
    "--machine.device-type", "cpu",
    "--pipeline.datamanager.cache-images", "gpu",  # "gpu" = the training device; "cpu" would pin memory
    "--pipeline.model.random-init", "True",
    "--pipeline.model.num-random", "400",
    "--steps-per-eval-image", "100000",
    "--steps-per-eval-batch", "100000",
    "--steps-per-eval-all-images", "100000",
]
"""ns-train options that keep a splatfacto-family run tiny and CPU-only."""


def cpu_env() -> Dict[str, str]:
    """Environment for ns-* subprocesses on CPU: two threads, no torch.compile, an ``ffmpeg`` on PATH
    (``ensure_ffmpeg``: the system one, else imageio-ffmpeg's, linked for as long as this process runs).

    Two threads: the test process waits while the subprocess runs, so on the 2-core CI machine one thread would
    leave a core idle (a 4-step ``difix3d`` run with its fix round: ~70 s with one thread, ~50 s with two)."""
    from difix_ns.render.ffmpeg import ensure_ffmpeg

    ensure_ffmpeg()
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", TORCH_COMPILE_DISABLE="1")
    env.pop("DIFIX_RENDER_FIX", None)
    return env


def make_fox_subset(fox_dir: Path, out_dir: Path, stride: int = 8) -> Path:
    """A nerfstudio scene with every ``stride``-th fox frame; images are symlinked from ``fox_dir/images_4``."""
    transforms = json.loads((fox_dir / "transforms.json").read_text())
    transforms["frames"] = transforms["frames"][::stride]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "transforms.json").write_text(json.dumps(transforms))
    link = out_dir / "images_4"
    if not link.exists():
        link.symlink_to((fox_dir / "images_4").resolve(), target_is_directory=True)
    return out_dir


def run(cmd: Sequence[str], env: Dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a console script; on failure raise with the tail of its output."""
    proc = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{tail}")
    return proc


def train_tiny_run(
    data: Path, out_dir: Path, method: str = "splatfacto", iterations: int = 10, extra: Sequence[str] = (),
    env: Optional[Dict[str, str]] = None,
) -> Path:
    """``ns-train <method>`` for a few iterations on CPU; returns the run's config.yml.

    Every 4th view is held out (``--eval-mode interval``), so even a 7-view scene has eval/target cameras.
    """
    cmd: List[str] = [
        "ns-train", method, "--data", str(data), "--output-dir", str(out_dir), "--experiment-name", "fox",
        "--timestamp", "run", "--max-num-iterations", str(iterations), *CPU_TRAIN_ARGS, *extra,
        "nerfstudio-data", "--downscale-factor", "4", "--eval-mode", "interval", "--eval-interval", "4",
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    run(cmd, env or cpu_env(), cwd=out_dir)
    config = out_dir / "fox" / method / "run" / "config.yml"
    if not config.is_file():
        raise AssertionError(f"ns-train {method} wrote no {config}")
    return config


NERFACTO_CPU_ARGS = [
    "--vis", "tensorboard",
    "--machine.device-type", "cpu",
    "--pipeline.datamanager.train-num-rays-per-batch", "256",
    "--pipeline.model.eval-num-rays-per-chunk", "4096",
    # a small field and few samples per ray: nerfacto's hash grid runs in pure PyTorch on a CPU, and with the
    # defaults (16 levels, 256 + 96 proposal and 48 field samples per ray) a 68x120 render takes ~15 s a frame
    "--pipeline.model.num-levels", "4",
    "--pipeline.model.log2-hashmap-size", "12",
    "--pipeline.model.max-res", "64",
    "--pipeline.model.hidden-dim", "16",
    "--pipeline.model.hidden-dim-color", "16",
    "--pipeline.model.num-proposal-samples-per-ray", "16", "8",
    "--pipeline.model.num-nerf-samples-per-ray", "8",
    "--steps-per-eval-image", "100000",
    "--steps-per-eval-batch", "100000",
    "--steps-per-eval-all-images", "100000",
]
"""ns-train options that keep a stock nerfacto run tiny and CPU-only (stock model, smaller settings)."""

def train_tiny_nerfacto(data: Path, out_dir: Path, iterations: int = 3, env: Optional[Dict[str, str]] = None) -> Path:
    """A STOCK ``ns-train nerfacto`` run of a few iterations on CPU; returns its config.yml.

    Stock nerfacto downloads torchvision's AlexNet (torchmetrics LPIPS) when the model is built. On an offline machine
    this works only because importing the plugin's method configs (which every ``ns-*`` command does) installs the
    offline ImageNet-weight fallback: this run is the check of that.
    """
    cmd: List[str] = [
        "ns-train", "nerfacto", "--data", str(data), "--output-dir", str(out_dir),
        "--experiment-name", "fox", "--timestamp", "run", "--max-num-iterations", str(iterations), *NERFACTO_CPU_ARGS,
        "nerfstudio-data", "--downscale-factor", "4", "--eval-mode", "interval", "--eval-interval", "4",
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    run(cmd, env or cpu_env(), cwd=out_dir)
    config = out_dir / "fox" / "nerfacto" / "run" / "config.yml"
    if not config.is_file():
        raise AssertionError(f"ns-train nerfacto wrote no {config}")
    return config

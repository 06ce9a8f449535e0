"""Fixtures shared across test modules: the fox data path, one tiny random-weight Difix, and one short
``difix3d-splatfacto`` run (a few CPU iterations with one persisted fix round) that the render-time and viewer tests
read. Session-scoped, so the end-to-end runs happen once per test session instead of once per module.

Random weights prove plumbing, not quality.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SHARED = Path(__file__).parents[1] / ".." / "shared"
"""The shared folder next to the checkout (data and reference material; never copied into the repository)."""
SHARED_DATA = SHARED / "data"
"""The shared data folder (``../shared/data``): fox, strecha, splat_guitar, difix_examples, metric_calibration, ..."""
FOX = SHARED_DATA / "fox"
"""The fox scene (quarter-resolution images_4 + transforms.json) from the shared data folder."""
FOX_IMAGES_4 = FOX / "images_4"
"""The fox scene's quarter-resolution images."""
GUITAR = SHARED_DATA / "splat_guitar" / "guitar.compressed.ply"
"""The MIT guitar splat (PlayCanvas compressed PLY) in the shared data folder."""

SCRIPTS = Path(__file__).parents[1] / "scripts"
"""The repository's scripts (benchmarks, GPU sessions, NiFi training and evaluation)."""


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a fresh module (its ``main`` not run), importing as ``python scripts/<name>.py`` does:
    with ``scripts/`` on ``sys.path``, so its imports of the scripts' shared helpers (``kernel_bench``,
    ``bench_difix``) resolve."""
    if str(SCRIPTS) not in sys.path:
        sys.path.append(str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(f"_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fox_dir() -> Path:
    if not (FOX / "transforms.json").is_file():
        pytest.skip(f"fox scene not found at {FOX} (../shared/data/fox)")
    return FOX


@pytest.fixture(scope="session")
def tiny_difix_ref(tmp_path_factory) -> Path:
    """A tiny random-weight Difix in the nvidia/difix_ref layout (read-only for the tests that use it)."""
    from difix_ns.testing import save_tiny_difix

    return save_tiny_difix(tmp_path_factory.mktemp("shared_tiny_difix") / "tiny_difix_ref", reference_mixing=True)


@pytest.fixture(scope="session")
def difix3d_splatfacto_run(tmp_path_factory, fox_dir, tiny_difix_ref):
    """``(work, env, config, tiny)``: ``ns-train difix3d-splatfacto`` for 6 CPU iterations on every 8th fox frame
    with one fix round at step 3 (persisted under ``<run>/difix_rounds/``); its config carries the tiny fixer.
    Tests write their outputs into their own sub-folders of ``work``."""
    from difix_ns.render import testing as rt

    work = tmp_path_factory.mktemp("difix3d_splatfacto_run")
    env = rt.cpu_env()
    data = rt.make_fox_subset(fox_dir, work / "fox7", stride=8)
    config = rt.train_tiny_run(
        data, work / "outputs", "difix3d-splatfacto", iterations=6, env=env,
        extra=["--pipeline.fixer.model-name", str(tiny_difix_ref), "--pipeline.fixer.dtype", "float32",
               "--pipeline.fixer.device", "cpu", "--pipeline.fix-steps", "3"],
    )
    return work, env, config, tiny_difix_ref


@pytest.fixture(scope="session")
def stock_splatfacto_run(tmp_path_factory, fox_dir):
    """``(work, env, config)``: STOCK ``ns-train splatfacto`` (no plugin method) for 10 CPU iterations on every 8th
    fox frame; render-time tools must work on it without retraining."""
    from difix_ns.render import testing as rt

    work = tmp_path_factory.mktemp("stock_splatfacto_run")
    env = rt.cpu_env()
    data = rt.make_fox_subset(fox_dir, work / "fox7", stride=8)
    config = rt.train_tiny_run(data, work / "outputs", "splatfacto", iterations=10, env=env)
    return work, env, config

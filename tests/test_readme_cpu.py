"""The README's shell blocks, classified and run: every fenced ``bash``/``python`` block in README.md carries a marker
comment on the line just above it, and each ``<!-- cpu-test -->`` block runs AS WRITTEN on the CPU.

Markers (see README "A first run on a CPU"):
- ``<!-- cpu-test -->``: runs as written on a CPU machine without a model hub. This test runs the blocks in README
  order, in one shared empty folder, with ``bash -e``; each must exit 0 without a traceback. It sets what the
  README tells users to set: ``DATA``, here the fox scene of the shared data folder (``../shared/data/fox``:
  ``transforms.json`` + ``images_4/``). Like the other subprocess tests it also puts this checkout first on
  ``PYTHONPATH`` and runs two BLAS threads per process (``difix_ns.render.testing.cpu_env``).
- ``<!-- gpu-only: REASON -->``: needs CUDA, hub weights or hours of training; the CPU form is a ``cpu-test`` block.
- ``<!-- not-run: REASON -->``: installs packages, runs the whole suite or names placeholder data; REASON says
  where it is covered instead.

A new block without a marker fails ``test_every_readme_block_is_classified``. The fixer in the CPU blocks is
``random-tiny`` (random weights): the runs prove plumbing, not quality.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import FOX

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"<!--\s*(cpu-test|gpu-only|not-run)\s*(?::\s*(.*?))?\s*-->")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)


def readme_blocks() -> list[tuple[str | None, str, str, int]]:
    """``(kind, reason, code, line)`` of every fenced block; ``kind`` None when the line above has no marker."""
    text = (ROOT / "README.md").read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        if match.group(1) not in ("bash", "sh", "python", "console"):
            continue
        line = text.count("\n", 0, match.start()) + 1
        above = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.fullmatch(above.strip())
        kind, reason = (marker.group(1), marker.group(2) or "") if marker else (None, "")
        blocks.append((kind, reason, match.group(2), line))
    return blocks


def test_every_readme_block_is_classified():
    blocks = readme_blocks()
    assert len(blocks) >= 10
    unmarked = [f"README.md:{line}" for kind, _, _, line in blocks if kind is None]
    assert unmarked == [], "blocks without <!-- cpu-test / gpu-only: why / not-run: why --> on the line above"
    no_reason = [f"README.md:{line}" for kind, reason, _, line in blocks if kind != "cpu-test" and len(reason) < 10]
    assert no_reason == [], "gpu-only / not-run markers must say why"
    assert sum(kind == "cpu-test" for kind, *_ in blocks) >= 3


def test_cpu_blocks_use_only_what_the_readme_sets():
    """CPU blocks name no hub model and no placeholder path: data comes from $DATA, models are random-tiny."""
    for kind, _, code, line in readme_blocks():
        if kind != "cpu-test":
            continue
        assert "nvidia/" not in code and "stabilityai/" not in code, f"README.md:{line} names a hub model"
        words = re.sub(r'"\$\{DATA:\?[^}]*\}"', "", code).replace("$DATA", "<data>").split()
        placeholders = [w for w in words if re.fullmatch(r"(DATA|OUT|RUN|STOCK\w*|SD3_DIR)(/.*)?|.*path/to.*", w)]
        assert placeholders == [], f"README.md:{line}: placeholders {placeholders}"


@pytest.fixture(scope="module")
def cpu_blocks_run(tmp_path_factory):
    """Run every cpu-test block in README order in one scratch folder; ``(work, [(line, CompletedProcess)])``."""
    if not (FOX / "transforms.json").is_file() or not (FOX / "images_4").is_dir():
        pytest.skip(f"fox scene not found at {FOX} (../shared/data/fox)")
    from difix_ns.render.testing import cpu_env

    work = tmp_path_factory.mktemp("readme_cpu")
    env = cpu_env()  # two BLAS threads (the 2 cores; this process waits) and no torch.compile
    env.update(DATA=str(FOX.resolve()), PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p))
    env.pop("DIFIX_NS_DEBUG", None)
    results = []
    for kind, _, code, line in readme_blocks():
        if kind != "cpu-test":
            continue
        proc = subprocess.run(["bash", "-e", "-c", code], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)
        results.append((line, proc))
        if proc.returncode != 0:
            break  # later blocks read earlier blocks' outputs
    return work, results


def test_every_cpu_block_runs_as_written(cpu_blocks_run):
    work, results = cpu_blocks_run
    expected = [line for kind, _, _, line in readme_blocks() if kind == "cpu-test"]
    for line, proc in results:
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"README.md:{line} exited {proc.returncode}:\n{output[-4000:]}"
        assert "Traceback (most recent call last)" not in output, f"README.md:{line}:\n{output[-4000:]}"
    assert [line for line, _ in results] == expected


def test_cpu_blocks_write_what_the_readme_says(cpu_blocks_run):
    """The outputs the CPU section names exist (fixed image, both runs with a persisted fix round, rgb_fixed frames);
    the runs say they train on the CPU, show each fix round's progress and random-tiny's PLUMBING ONLY banner."""
    work, results = cpu_blocks_run
    assert all(proc.returncode == 0 for _, proc in results)
    assert list((work / "cpu_fixed").glob("*.png"))
    for method in ("difix3d-splatfacto", "difix3d"):
        run = work / "cpu_runs" / "fox" / method / "cpu"
        assert (run / "config.yml").is_file(), method
        assert list((run / "difix_rounds").glob("step_*/fixed/*.png")), method
        assert list((run / "nerfstudio_models").glob("step-*.ckpt")), method
    assert list((work / "cpu_renders").rglob("*.png")) or list((work / "cpu_renders").rglob("*.jpg"))
    output = "\n".join(proc.stdout + proc.stderr for _, proc in results)
    assert "PLUMBING ONLY" in output
    assert output.count("training on the CPU (no CUDA device found)") == 2  # no --machine.device-type needed
    assert "Difix3D fix round @3" in output and "Difix3D fix round @2" in output  # the rounds' progress

"""The post-fix benchmark's CPU smoke run (``scripts/bench_postfix_render.py --allow-cpu``; the GPU numbers are in
docs/gpu_results/bench_postfix_render_*.json): every row it reports is written, and none of the ways it asks the
render hook for frames changes a frame."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cpu_smoke_times_the_viewer_path_with_the_same_frames(tmp_path, stock_splatfacto_run):
    """At batch 1 the benchmark also asks for each frame unplanned, as the viewer does (``viewer_unplanned_*``, the
    row that times the viewer's way); those frames, and the ones fixed working a batch ahead, equal the planned
    frames fixed one at a time."""
    _, env, config = stock_splatfacto_run
    out = tmp_path / "bench_postfix_render.json"
    proc = subprocess.run(
        [sys.executable, "scripts/bench_postfix_render.py", "--allow-cpu", "--load-config", str(config),
         "--frames", "2", "--sizes", "tiny", "--batch-sizes", "1", "--no-compile", "--height", "64", "--width", "96",
         "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text())["models"]["tiny"]["batch_1"]
    assert row["references_per_frame"] == 1  # the nvidia/difix_ref layout: one training view a frame
    assert row["viewer_unplanned_ms_per_frame"] > 0 and row["render_plus_fix_not_ahead_ms_per_frame"] > 0
    assert row["viewer_unplanned_max_abs_diff"] == 0.0
    assert row["work_ahead_max_abs_diff"] == 0.0

#!/usr/bin/env python
r"""CPU benchmark of the documented CPU recipes for ``ns-train difix3d`` (nerfacto-based) and
``ns-train difix3d-splatfacto`` on the fox scene at quarter resolution; writes JSON.

Each recipe is run exactly as ``ns-train`` runs it (nerfstudio's own entry point, in this process) with the
fixer ``random-tiny``. Measured: setup time, the wall time of every training step (fix rounds excluded: they run
before their step), every fix round (render + fix + pool update; the first one includes building and loading the
tiny model), and the total wall time of the recipe.

Wall times and CPU times (user + system of this process, all its threads) are both recorded: on a machine shared
with other jobs the wall times are upper bounds, while CPU-seconds do not grow with the others' load (they divide by
up to the thread count to give the wall time on an idle machine).

A random-weight fixer measures COST (the plumbing), NOT QUALITY: its outputs are noise. On a shared machine the
numbers are upper bounds.

    nice -n 10 python scripts/bench_cpu_recipe.py --data ../shared/data/fox --out docs/cpu_results/cpu_recipe.json
    python scripts/bench_cpu_recipe.py --data ../shared/data/fox --out /tmp/cpu_recipe_smoke.json --smoke
"""

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Literal, Optional

import tyro

NOTE = (
    "The fixer is random-tiny (random weights): these numbers measure the cost of the CPU recipe's plumbing "
    "(training steps, fix rounds), not quality."
)

COMMON_TAIL = ["nerfstudio-data", "--downscale-factor", "4", "--eval-mode", "interval", "--eval-interval", "8"]


def recipe_args(method: str, steps: int, fix_steps: List[int]) -> List[str]:
    """The documented CPU recipe of ``method`` (docs/first_run.md), with ``steps`` iterations and rounds at
    ``fix_steps``; ``--data``/``--output-dir`` are added by the caller."""
    args = [
        method, "--max-num-iterations", str(steps), "--pipeline.fix-steps", *map(str, fix_steps),
        "--pipeline.novel-view-scale", "0.25", "--pipeline.fixer.model-name", "random-tiny", "--vis", "tensorboard",
    ]
    if method == "difix3d":
        args += ["--pipeline.datamanager.train-num-rays-per-batch", "1024",
                 "--pipeline.model.eval-num-rays-per-chunk", "4096"]
    else:
        args += ["--pipeline.model.num-random", "5000"]
    return args


def run_recipe(method: str, data: Path, out_dir: Path, steps: int, fix_steps: List[int]) -> dict:
    """Run ``ns-train`` in this process with timing hooks on the Trainer; return the measurements."""
    from nerfstudio.engine.trainer import Trainer
    from nerfstudio.scripts import train as ns_train

    from difix_ns.nerfstudio.pipeline import Difix3DPipeline

    args = [*recipe_args(method, steps, fix_steps), "--data", str(data), "--output-dir", str(out_dir),
            "--experiment-name", "fox", "--timestamp", method, *COMMON_TAIL]
    step_s: List[float] = []
    step_cpu_s: List[float] = []
    round_cpu_s: List[float] = []
    captured: dict = {}
    original_iteration, original_setup = Trainer.train_iteration, Trainer.setup
    original_round = Difix3DPipeline.run_fix_round

    def timed_iteration(self, step):
        t0, c0 = time.perf_counter(), time.process_time()
        out = original_iteration(self, step)
        step_s.append(time.perf_counter() - t0)
        step_cpu_s.append(time.process_time() - c0)
        return out

    def timed_round(self, step):
        c0 = time.process_time()
        out = original_round(self, step)
        round_cpu_s.append(time.process_time() - c0)
        return out

    def timed_setup(self, *a, **k):
        t0 = time.perf_counter()
        out = original_setup(self, *a, **k)
        captured["trainer"], captured["setup_s"] = self, time.perf_counter() - t0
        return out

    Trainer.train_iteration, Trainer.setup = timed_iteration, timed_setup
    Difix3DPipeline.run_fix_round = timed_round
    argv = sys.argv
    sys.argv = ["ns-train", *args]
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        ns_train.entrypoint()
    finally:
        sys.argv = argv
        Trainer.train_iteration, Trainer.setup = original_iteration, original_setup
        Difix3DPipeline.run_fix_round = original_round
    trainer = captured["trainer"]
    pipeline = trainer.pipeline
    pipeline.wait_for_round_writes()
    total, total_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    later, later_cpu = step_s[1:] or step_s, step_cpu_s[1:] or step_cpu_s
    return {
        "command": "ns-train " + " ".join(args),
        "steps": steps,
        "fix_steps": fix_steps,
        "setup_s": round(captured["setup_s"], 2),
        "first_step_s": round(step_s[0], 2),
        "median_step_s": round(statistics.median(later), 3),
        "mean_step_s": round(statistics.fmean(later), 3),
        "median_step_cpu_s": round(statistics.median(later_cpu), 3),
        "fix_round_s": [round(s, 2) for s in pipeline.fix_round_seconds],
        "fix_round_cpu_s": [round(s, 2) for s in round_cpu_s],
        "fix_round_breakdown": [{k: round(v, 2) for k, v in b.items()} for b in pipeline.fix_round_breakdown],
        "novel_views_per_round": len(pipeline.datamanager.novel_pool),
        "total_wall_s": round(total, 1),
        "total_cpu_s": round(total_cpu, 1),
    }


def project(run: dict, steps: int, fix_every: int) -> dict:
    """Total of the full recipe (``steps`` iterations, a round every ``fix_every``) from the measured parts: setup +
    steps x median step + rounds x first round (later rounds render and fix the same number of views; the first
    also builds the tiny model, so this errs high). Wall from wall times, CPU from CPU times."""
    rounds = len(range(fix_every, steps, fix_every)) if fix_every > 0 else 0
    wall = run["setup_s"] + steps * run["median_step_s"] + rounds * run["fix_round_s"][0]
    cpu = steps * run["median_step_cpu_s"] + rounds * run["fix_round_cpu_s"][0]
    return {"steps": steps, "fix_every": fix_every, "rounds": rounds, "wall_s": round(wall, 1),
            "train_and_rounds_cpu_s": round(cpu, 1), "how": "projected from this run's median step and first round"}


@dataclass
class CpuRecipeConfig:
    """Options of the CPU recipe benchmark."""

    data: Path
    """fox scene folder (transforms.json + images_4/)"""
    out: Path
    """JSON file to write"""
    difix3d_steps: int = 12
    """iterations measured for difix3d"""
    splatfacto_steps: int = 12
    """iterations measured for difix3d-splatfacto"""
    recipe_steps: int = 2000
    """steps of the recipe whose total is projected"""
    recipe_fix_every: int = 500
    """fix-round spacing of the projected recipe"""
    methods: List[Literal["difix3d", "difix3d-splatfacto"]] = field(
        default_factory=lambda: ["difix3d", "difix3d-splatfacto"])
    """which recipes to measure"""
    smoke: bool = False
    """6 steps, one round at step 3 (checks this script only)"""
    machine_note: str = "2-core CPU shared with other jobs running at the same time"
    """free text saved with the numbers"""


def main(argv: Optional[List[str]] = None) -> None:
    args = tyro.cli(CpuRecipeConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    if not args.methods:
        sys.exit("error: --methods needs at least one recipe (difix3d, difix3d-splatfacto)")
    if not (args.data / "transforms.json").is_file() or not (args.data / "images_4").is_dir():
        sys.exit(f"error: --data {args.data}: needs transforms.json and images_4/ (the fox scene)")
    if args.out.exists():
        sys.exit(f"error: --out {args.out} exists; remove it or choose another path")
    os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

    import torch

    report = {
        "what": "CPU recipes for ns-train difix3d and difix3d-splatfacto, fox at 1/4 resolution",
        "note": NOTE,
        "plumbing_only": True,
        "machine": {"description": args.machine_note, "cpu_count": os.cpu_count(), "torch_threads":
                    torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__,
                    "cuda_available": torch.cuda.is_available()},
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": {},
    }
    plans = {m: {"difix3d": args.difix3d_steps, "difix3d-splatfacto": args.splatfacto_steps}[m] for m in args.methods}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    with tempfile.TemporaryDirectory(prefix="bench_cpu_recipe_") as tmp:
        for method, steps in plans.items():
            steps, fix_steps = (6, [3]) if args.smoke else (steps, [steps // 2])
            run = run_recipe(method, args.data.resolve(), Path(tmp), steps, fix_steps)
            run["projected"] = project(run, args.recipe_steps, args.recipe_fix_every)
            report["runs"][method] = run
            print(json.dumps({method: report["runs"][method]}, indent=1), flush=True)
            partial.write_text(json.dumps(report, indent=2) + "\n")  # what is measured survives an interruption
    partial.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

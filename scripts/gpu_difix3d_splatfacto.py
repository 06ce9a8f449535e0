#!/usr/bin/env python
r"""GPU benchmark: ``difix3d-splatfacto`` vs plain ``splatfacto`` on fox with sparse training views.

Same data, same steps; Difix3D adds ``--num-rounds`` fix rounds. Reports training wall time (``trainer.train()``
only, setup excluded) and that of every 250-step segment with the Gaussians at its end (``segments``), the time of
each fix round (loading the fixer, rendering, fixing, pool update), the training time without the rounds, peak GPU
memory (``torch.cuda.max_memory_allocated``) and test PSNR, as JSON (stdout, and ``--out`` rewritten after every
run). ``--repeats N`` runs the pair N times, alternating, for a median ratio: single
runs of one command differ by up to 25 % between machines and calls. ``--ablate-prepare-fixer`` adds, to every
repeat, a difix3d run that loads the fixer at the first round instead of in the background.

The fixers are RANDOM-WEIGHT models built by ``difix_ns.testing``: a tiny one (plumbing cost) and, unless
``--skip-sdturbo``, one with the SD-Turbo-sized architecture of nvidia/difix_ref (real fix cost). A random fixer
measures COST, NOT QUALITY: its outputs are noise, so the Difix3D PSNRs below say nothing about Difix3D's benefit.

    source .device/setup.sh && python scripts/gpu_difix3d_splatfacto.py --data .device/data/fox \
        --downscale-factor 2 --out $OUT/gpu_difix3d_splatfacto.json
"""

import gc
import importlib.util
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Literal, Optional

import torch
import tyro

NOTE = (
    "Fixers are random-weight models (difix_ns.testing): these numbers measure the COST of Difix3D fix rounds "
    "(wall time, memory), not quality; Difix3D PSNRs with a random fixer are meaningless."
)


def make_sparse_scene(data: Path, downscale: int, train_every: int, workdir: Path) -> tuple[Path, int, int]:
    """A transforms.json listing every frame, with train/val/test file lists: every ``train_every``-th frame trains,
    the frame halfway between two training frames is a test (target) view."""
    meta_path = data / "transforms.json"
    if not meta_path.is_file():
        sys.exit(f"error: {meta_path} not found (--data must be a nerfstudio scene folder)")
    image_dir = data / f"images_{downscale}"
    if not image_dir.is_dir():
        sys.exit(f"error: {image_dir} not found; pick a --downscale-factor whose images_N folder exists")
    meta = json.loads(meta_path.read_text())
    frames = meta["frames"]
    train = [f["file_path"] for i, f in enumerate(frames) if i % train_every == 0]
    test = [f["file_path"] for i, f in enumerate(frames) if i % train_every == train_every // 2]
    meta.update(train_filenames=train, val_filenames=test, test_filenames=test)
    scene = workdir / "fox_sparse"
    scene.mkdir(parents=True, exist_ok=True)
    (scene / "transforms.json").write_text(json.dumps(meta))
    link = scene / f"images_{downscale}"
    if not link.exists():
        link.symlink_to(image_dir.resolve(), target_is_directory=True)
    return scene, len(train), len(test)


def run(method: str, scene: Path, outdir: Path, name: str, steps: int, downscale: int, extra: list[str]) -> dict:
    import tyro
    from nerfstudio.configs.method_configs import AnnotatedBaseConfigUnion

    args = [
        method,
        "--data",
        str(scene),
        "--output-dir",
        str(outdir),
        "--experiment-name",
        "bench",
        "--timestamp",
        name,
        "--max-num-iterations",
        str(steps),
        "--steps-per-eval-batch",
        "0",
        "--steps-per-eval-image",
        "0",
        "--steps-per-eval-all-images",
        "0",
        "--steps-per-save",
        str(10 * steps),
        "--vis",
        "tensorboard",
        *extra,
        "nerfstudio-data",
        "--downscale-factor",
        str(downscale),
    ]
    config = tyro.cli(AnnotatedBaseConfigUnion, args=args)
    config.vis = "none"  # no event writers / viewer: keep logging I/O out of the timing (both methods alike)
    config.pipeline.datamanager.data = config.data
    config.set_timestamp()
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    marks = time_segments(trainer, SEGMENT_STEPS)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    trainer.train()
    wait_writes = getattr(trainer.pipeline, "wait_for_round_writes", None)
    if callable(wait_writes):  # round files are written in the background: count them in the wall time
        wait_writes()
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    result = {
        "setup_s": t1 - t0,
        "train_wall_s": t2 - t1,
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
        "segments": segments(marks, t1),
    }
    pipeline = trainer.pipeline
    pipeline.eval()
    metrics = pipeline.get_average_eval_image_metrics()
    result["test_psnr"] = float(metrics["psnr"])
    result["num_gaussians"] = int(pipeline.model.num_points)
    if hasattr(pipeline, "fix_round_seconds"):
        dm = pipeline.datamanager
        result.update(
            fix_rounds=pipeline.completed_rounds,
            fix_round_s=pipeline.fix_round_seconds,
            fix_round_breakdown=getattr(pipeline, "fix_round_breakdown", None),
            fixer_load_s=getattr(pipeline, "fixer_load_seconds", None),
            fixer_prepared_in_background=bool(getattr(pipeline._lazy_fixer, "prepared_in_background", False)),
            fixer_warmup_s=getattr(pipeline._lazy_fixer, "warmup_seconds", None),
            fixer_warmup_error=getattr(pipeline._lazy_fixer, "warmup_error", None),
            pool_views=len(dm.novel_pool),
            pool_draws=dm.pool_draws,
            dataset_draws=dm.dataset_draws,
        )
    del trainer, pipeline
    gc.collect()
    torch.cuda.empty_cache()
    return result


SEGMENT_STEPS = 250
"""training steps per timed segment (``segments`` in the JSON)"""


def time_segments(trainer, every: int) -> list[tuple[int, float, int]]:
    """Record (steps done, time, Gaussians) after every ``every``-th training iteration, GPU synchronised: where in
    the run a difix3d run spends its extra time (the steps before the first round, the round segments, the rest)."""
    marks: list[tuple[int, float, int]] = []
    iteration = trainer.train_iteration

    def timed_iteration(step: int):
        out = iteration(step)
        if (step + 1) % every == 0:
            torch.cuda.synchronize()
            marks.append((step + 1, time.perf_counter(), int(trainer.pipeline.model.num_points)))
        return out

    trainer.train_iteration = timed_iteration
    return marks


def segments(marks: list[tuple[int, float, int]], start: float) -> list[dict]:
    """Seconds of each segment [previous mark, mark) and the Gaussians at its end (the callbacks of a step, where
    fix rounds and lagged commits run, count in the segment of that step)."""
    out, step0, t0 = [], 0, start
    for step, t, gaussians in marks:
        out.append({"steps": [step0, step], "seconds": round(t - t0, 4), "num_gaussians": gaussians})
        step0, t0 = step, t
    return out


@dataclass
class GpuDifix3dConfig:
    """Options of the difix3d-splatfacto vs splatfacto GPU benchmark."""

    data: Path
    """nerfstudio scene folder (e.g. .device/data/fox)"""
    downscale_factor: int = 2
    """uses images_N (fox has images_2 and images_4)"""
    steps: int = 3000
    """training steps of every run"""
    num_rounds: int = 3
    """fix rounds, evenly spaced over the run"""
    train_every: int = 5
    """every N-th frame trains (sparse views)"""
    skip_sdturbo: bool = False
    """skip the SD-Turbo-sized random fixer run"""
    skip_tiny: bool = False
    """skip the tiny random fixer run"""
    cudnn_benchmark: bool = True
    """run with torch.backends.cudnn.benchmark on, as ns-train does (nerfstudio/scripts/train.py sets it when
    imported); --no-cudnn-benchmark: off, the condition of every earlier run of this script (through session 14)"""
    prepare_fixer: Literal["auto", "background", "first-round"] = "auto"
    """--pipeline.prepare-fixer of the difix3d runs: "auto" (background on CUDA: the fixer loads and runs a warm-up
    fix on a worker thread from the first step), or "first-round" (loaded when the first round needs it, as every run
    through session 14)"""
    fix_lag_steps: int = 0
    """--pipeline.fix-lag-steps of the difix3d runs: training steps that go on while a round's views are fixed on the
    fixer thread (0: training waits for each round's fix, as upstream)"""
    ablate_prepare_fixer: bool = False
    """in every repeat, also run the SD-Turbo-sized difix3d with --pipeline.prepare-fixer first-round (the A/B of
    loading ahead, same machine)"""
    repeats: int = 1
    """run splatfacto and the SD-Turbo-sized difix3d-splatfacto this many times, alternating, and report each pair's
    ratio and their median (single runs varied from 1.18x to 1.49x on H100s in session 14)"""
    out: Optional[Path] = None
    """write the JSON here as well"""


def main(argv: Optional[List[str]] = None) -> None:
    args = tyro.cli(GpuDifix3dConfig, args=argv, description=__doc__, config=(tyro.conf.FlagCreatePairsOff,))
    if args.repeats < 1:
        sys.exit(f"error: --repeats must be >= 1, got {args.repeats}")
    if not torch.cuda.is_available():
        sys.exit("error: this benchmark needs a CUDA GPU")

    from difix_ns.testing import build_difix_pipeline, save_tiny_difix, write_tiny_tokenizer

    # ns-train imports nerfstudio.scripts.train, which turns cuDNN's autotuning on for the whole process; this script
    # builds its trainers without that module. With it on, the first eager fix of every new shape autotunes.
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    work = Path(tempfile.mkdtemp(prefix="difix3d_bench_"))
    scene, n_train, n_test = make_sparse_scene(args.data, args.downscale_factor, args.train_every, work)
    fix_steps = [round(args.steps * (i + 1) / (args.num_rounds + 1)) for i in range(args.num_rounds)]
    report = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "data": str(args.data),
        "downscale_factor": args.downscale_factor,
        "train_views": n_train,
        "test_views": n_test,
        "novel_views_per_round": n_test,
        "steps": args.steps,
        "fix_steps": fix_steps,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "prepare_fixer": args.prepare_fixer,
        "fix_lag_steps": args.fix_lag_steps,
        "note": NOTE,
        "runs": {},
    }
    tiny = save_tiny_difix(work / "tiny_difix_ref", reference_mixing=True)
    fixers = {} if args.skip_tiny else {"difix3d_tiny_random_fixer": tiny}
    if not args.skip_sdturbo:
        folder = work / "sdturbo_sized_random_difix_ref"
        # Without peft the VAE is built without its LoRA adapter: the same compute as a merged LoRA.
        has_peft = importlib.util.find_spec("peft") is not None
        pipe = build_difix_pipeline("real", reference_mixing=True, device="cuda", vae_lora=has_peft)
        pipe.to(torch.bfloat16)
        pipe.save_pretrained(folder)
        for extra in ("tokenizer.json", "chat_template.jinja"):  # keep the slow-tokenizer layout of the real repos
            if (folder / "tokenizer" / extra).exists():
                (folder / "tokenizer" / extra).unlink()
        write_tiny_tokenizer(folder / "tokenizer")
        fixers["difix3d_sdturbo_sized_random_fixer"] = folder
        del pipe
        gc.collect()
        torch.cuda.empty_cache()

    out = work / "runs"

    def save() -> None:  # after every run, so a run cut short keeps what it measured
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2))

    run("splatfacto", scene, out, "warmup", 100, args.downscale_factor, [])  # CUDA / kernel warm-up, not reported
    runs = report["runs"]
    runs["splatfacto"] = run("splatfacto", scene, out, "plain", args.steps, args.downscale_factor, [])
    print(json.dumps({"splatfacto": runs["splatfacto"]}), flush=True)
    save()
    for name, model_dir in fixers.items():
        runs[name] = run("difix3d-splatfacto", scene, out, name, args.steps, args.downscale_factor,
                         difix_args(model_dir, fix_steps, args.prepare_fixer, args.fix_lag_steps))
        runs[name].update(compared_with(runs["splatfacto"], runs[name]))
        print(json.dumps({name: runs[name]}), flush=True)
        save()
    sized = "difix3d_sdturbo_sized_random_fixer"
    ablation = "first-round" if args.ablate_prepare_fixer and args.prepare_fixer != "first-round" else None
    if (args.repeats > 1 or ablation) and sized in fixers:
        pairs = report["repeats"] = []
        for i in range(args.repeats):
            plain = runs["splatfacto"] if i == 0 else run(
                "splatfacto", scene, out, f"plain_{i}", args.steps, args.downscale_factor, [])
            fixed = runs[sized] if i == 0 else run(
                "difix3d-splatfacto", scene, out, f"{sized}_{i}", args.steps, args.downscale_factor,
                difix_args(fixers[sized], fix_steps, args.prepare_fixer, args.fix_lag_steps))
            pairs.append(pair_summary(plain, fixed))
            if ablation:
                other = run("difix3d-splatfacto", scene, out, f"{sized}_{ablation}_{i}", args.steps,
                            args.downscale_factor, difix_args(fixers[sized], fix_steps, ablation, args.fix_lag_steps))
                pairs[-1][f"prepare_fixer_{ablation}"] = pair_summary(plain, other)
                report[f"wall_time_ratio_median_prepare_fixer_{ablation}"] = statistics.median(
                    p[f"prepare_fixer_{ablation}"]["wall_time_ratio"] for p in pairs)
            report["wall_time_ratio_median"] = statistics.median(p["wall_time_ratio"] for p in pairs)
            print(json.dumps({"repeat": i, **pairs[-1]}), flush=True)
            save()
    print(json.dumps(report, indent=2))
    save()


def difix_args(
    model_dir: Path, fix_steps: List[int], prepare_fixer: str = "auto", fix_lag_steps: int = 0
) -> List[str]:
    return ["--pipeline.fixer.model-name", str(model_dir), "--pipeline.fixer.dtype", "bfloat16",
            "--pipeline.prepare-fixer", prepare_fixer, "--pipeline.fix-lag-steps", str(fix_lag_steps),
            "--pipeline.fix-steps", *map(str, fix_steps)]


def compared_with(plain: dict, fixed: dict) -> dict:
    """Wall-time and memory ratios of a difix3d run against the splatfacto run, and its training time without the
    fix rounds (what pool views and the extra Gaussians they bring cost)."""
    rounds = sum(fixed.get("fix_round_s") or [])
    return {
        "wall_time_ratio_vs_splatfacto": fixed["train_wall_s"] / plain["train_wall_s"],
        "peak_mem_ratio_vs_splatfacto": fixed["peak_gpu_mem_gib"] / plain["peak_gpu_mem_gib"],
        "fix_rounds_total_s": rounds,
        "train_without_rounds_ratio_vs_splatfacto": (fixed["train_wall_s"] - rounds) / plain["train_wall_s"],
        "segment_ratios_vs_splatfacto": segment_ratios(plain.get("segments"), fixed.get("segments")),
    }


def segment_ratios(plain: Optional[list], fixed: Optional[list]) -> Optional[list]:
    """Each segment's seconds (and Gaussians at its end) in the difix3d run over the splatfacto run's."""
    if not plain or not fixed or len(plain) != len(fixed):
        return None
    return [{"steps": f["steps"], "seconds_ratio": round(f["seconds"] / max(p["seconds"], 1e-9), 3),
             "gaussians_ratio": round(f["num_gaussians"] / max(p["num_gaussians"], 1), 3)}
            for p, f in zip(plain, fixed)]


def pair_summary(plain: dict, fixed: dict) -> dict:
    ratios = compared_with(plain, fixed)
    return {
        "splatfacto_train_wall_s": plain["train_wall_s"],
        "difix3d_train_wall_s": fixed["train_wall_s"],
        "wall_time_ratio": ratios["wall_time_ratio_vs_splatfacto"],
        "fix_round_s": fixed.get("fix_round_s"),
        "fix_round_breakdown": fixed.get("fix_round_breakdown"),
        "fixer_prepared_in_background": fixed.get("fixer_prepared_in_background"),
        "fixer_warmup_s": fixed.get("fixer_warmup_s"),
        "peak_gpu_mem_gib": [plain["peak_gpu_mem_gib"], fixed["peak_gpu_mem_gib"]],
        "train_without_rounds_ratio": ratios["train_without_rounds_ratio_vs_splatfacto"],
        "segment_ratios": ratios["segment_ratios_vs_splatfacto"],
        "num_gaussians": [plain["num_gaussians"], fixed["num_gaussians"]],
    }


if __name__ == "__main__":
    main()

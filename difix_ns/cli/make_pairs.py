"""``difix-make-pairs``: (degraded render, clean photo, nearest clean reference) pairs from one capture, for training a
Difix fixer with ``difix-train``.

    difix-make-pairs --scene data/fox --out pairs/fox --steps 2000 --splat.downscale-factor 4

Trains short splatfacto runs in this process (sparse / underfit / cross recipes), writes PNGs and ``pairs.json`` in
upstream Difix's format with a per-pair ``recipe`` tag. Re-running the same command resumes: finished runs are
skipped. See docs/train_fixer.md.
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

import tyro

from difix_ns.cli.common import cli_main, console, progress
from difix_ns.training.pairs import MakePairsConfig, make_pairs, plan_runs


def run(cfg: MakePairsConfig) -> dict:
    from difix_ns.training.scenes import holdout_split, load_scene

    scene = load_scene(cfg.scene, cfg.out / "work")
    usable, _held = holdout_split(scene.frames, cfg.holdout, cfg.holdout_fraction, cfg.holdout_interval)
    total = len(plan_runs(cfg, usable, _held))
    with progress() as bar:
        task = bar.add_task(f"pairs {scene.name}", total=total)

        def on_event(kind: str, info: dict) -> None:
            if kind == "start":
                bar.update(task, description=f"{info['run']}: splatfacto on {info['train']} views")
            else:
                verb = "skipped (finished before)" if kind == "skip" else "done"
                console.print(f"{info['run']}: {verb}, {info['pairs']} pairs")
                bar.advance(task)

        summary = make_pairs(cfg, on_event)
    return summary


@cli_main
def main(argv: Optional[Sequence[str]] = None) -> None:
    cfg = tyro.cli(MakePairsConfig, args=argv, description=__doc__)
    summary = run(cfg)
    print(json.dumps(summary, indent=2))


def entrypoint() -> None:
    main()


if __name__ == "__main__":
    entrypoint()

"""``difix-train``: train or fine-tune a Difix fixer; the result loads wherever a Difix model does.

    difix-train --data pairs/fox/pairs.json --architecture small --lr 2e-4 --out runs/fixer
    difix-train --data pairs/fox/pairs.json --model-name nvidia/difix_ref --out runs/fixer_ft
    difix-train --scene data/fox --model-name nvidia/difix_ref --out runs/fox_fixer   # per-scene fixer
    accelerate launch --multi_gpu --num_processes 2 -m difix_ns.cli.train --data ... --out ...   # GPUs or CPU

Then: ``ns-train difix3d-splatfacto --pipeline.fixer.model-name runs/fixer/model ...`` or
``difix-fix --model_name runs/fixer/model ...``. See docs/train_fixer.md.
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

import tyro

from difix_ns.cli.common import cli_main, console
from difix_ns.training.trainer import TrainConfig, train


def run(cfg: TrainConfig) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("difix-train", total=cfg.max_steps, info="")

        def on_progress(event: dict) -> None:
            if event["event"] == "step":
                bar.update(task, completed=event["step"], info=f"loss {event['loss']:.4f}")
            else:
                console.print(
                    f"step {event['step']}: PSNR fixed {event['psnr_fixed']:.2f} / raw {event['psnr_degraded']:.2f} dB,"
                    f" LPIPS fixed {event['lpips_fixed']:.4f} / raw {event['lpips_degraded']:.4f}"
                )

        return train(cfg, on_progress)


@cli_main
def main(argv: Optional[Sequence[str]] = None) -> None:
    cfg = tyro.cli(TrainConfig, args=argv, description=__doc__)
    summary = run(cfg)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(json.dumps(summary, indent=2))


def entrypoint() -> None:
    main()


if __name__ == "__main__":
    entrypoint()

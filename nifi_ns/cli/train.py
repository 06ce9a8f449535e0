"""``nifi-train``: train the NiFi restorer (φ⁻ generator LoRA + φ⁺ critic LoRA) on paired renders.

    nifi-train --config configs/default.yaml --data_root pairs/ --exp runs/nifi_train
    nifi-train --config configs/default.yaml --data_root pairs/ --exp runs/nifi_smoke --smoke_test
    accelerate launch -m nifi_ns.cli.train ...        # multi-GPU
    python scripts/train_nifi.py ...                  # the same command as a script

Outputs: runs/<exp>/{latest,best}.pt (one file each: restorer + critic LoRAs, prompt embedding, optimiser/RNG state;
`nifi-eval --ckpt runs/<exp>/best.pt` and `--resume` read them), runs/<exp>/{latest,best}/ (the same restorer as
phi_minus.safetensors + phi_plus.safetensors + prompt_embeds.safetensors + nifi_restorer.json, e.g. for ns-eval's
--pipeline.restorer.lora-path), train_log.csv, train_summary.json.
--smoke_test: a tiny random backbone in the real layout is written to <exp>/tiny_<backbone>/ (unless --model_path),
4 steps on CPU at 64x64 crops, rank-4 adapters, LPIPS-alex: it proves the loop runs, not that anything is learned.

Configuration: the training hyper-parameters come from a YAML file (``--config``, read with ``yaml.safe_load`` into
the dataclasses of :mod:`nifi_ns.training.config`); the command-line flags are a tyro dataclass that keeps the NiFi
scripts' underscore spelling.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from difix_ns.cli.tyro_style import parse


@dataclass(kw_only=True)
class TrainConfig:
    """Options of ``nifi-train`` (the NiFi script's flags); the hyper-parameters live in the YAML ``--config``."""

    config: Optional[str] = None
    """YAML config (default: configs/default.yaml of the checkout)."""
    data_root: str
    """Pairs root: <scene>/rate_<λ>/<split>/{clean,degraded}/."""
    exp: str
    """Experiment folder (e.g. runs/nifi_train)."""
    smoke_test: bool = False
    """Few steps, tiny random models, CPU."""
    backbone: Optional[Literal["sd3", "sdturbo"]] = None
    """Overrides model.backbone."""
    model_path: Optional[str] = None
    """Overrides model.model_path (local folder or hub id)."""
    max_steps: Optional[int] = None
    """Overrides train.max_steps."""
    resume: bool = False
    """Continue from <exp>/latest."""
    device: Optional[str] = None
    """'cpu' forces CPU (default: accelerate's choice)."""
    overwrite: bool = False
    """Start afresh in an --exp folder that already holds a run (default: refuse; see --resume)."""


def parse_args(argv=None) -> TrainConfig:
    return parse(TrainConfig, argv, description=__doc__)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.max_steps is not None and args.max_steps < 1:
        print(f"error: --max_steps must be >= 1, got {args.max_steps}", file=sys.stderr)
        return 2
    previous = [Path(args.exp) / n for n in ("latest.pt", "train_log.csv") if (Path(args.exp) / n).exists()]
    if previous and not args.resume and not args.overwrite:
        print(f"error: --exp {args.exp} already holds a run ({previous[0]}); pass --resume to continue it or "
              "--overwrite to start afresh", file=sys.stderr)
        return 2
    if args.resume and args.overwrite:
        print("error: --resume and --overwrite contradict each other", file=sys.stderr)
        return 2
    from nifi_ns.training.config import ConfigError, default_config_path, load_config
    from nifi_ns.training.data import PairLayoutError

    try:
        cfg = load_config(args.config or default_config_path())
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.backbone:
        cfg.model.backbone = args.backbone
    if args.model_path:
        cfg.model.model_path = args.model_path
    device = args.device
    exp = Path(args.exp)
    from nifi_ns.training.data import scan_pairs

    try:  # a bad pairs folder fails before anything (tiny model, run folder) is written
        scan_pairs(args.data_root, cfg.data.train_split, cfg.data.rates, cfg.data.scenes)
    except PairLayoutError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.resume and not (exp / "latest.pt").is_file():
        print(f"error: --resume: '{exp / 'latest.pt'}' does not exist (no previous run in '{exp}')", file=sys.stderr)
        return 2
    if args.smoke_test:
        device = "cpu"
        from nifi_ns.restoration.testing import MAKERS

        if not args.model_path:
            tiny = exp / f"tiny_{cfg.model.backbone}"
            if not (tiny / "model_index.json").is_file():
                MAKERS[cfg.model.backbone](tiny)
            cfg.model.model_path = str(tiny.resolve())
        cfg.model.lora_rank = cfg.model.critic_lora_rank = 4
        cfg.model.lora_alpha = 4.0
        cfg.model.dtype = "float32"
        cfg.model.prompt_embeds_path = None
        cfg.train.max_steps, cfg.train.batch_size, cfg.train.crop_size = 4, 2, 64
        cfg.train.num_workers, cfg.train.log_every, cfg.train.save_every, cfg.train.eval_every = 0, 1, 2, 2
        cfg.train.eval_max_images, cfg.train.eval_crop = 2, 64
        cfg.loss_weights.lpips_net = "alex"
    if args.max_steps is not None:
        cfg.train.max_steps = args.max_steps

    from nifi_ns.training.trainer import NiFiTrainer

    try:
        trainer = NiFiTrainer(cfg, args.data_root, exp, device=device, resume=args.resume)
    except (PairLayoutError, FileNotFoundError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = trainer.train()
    if trainer.is_main:
        print(json.dumps({k: summary[k] for k in ("exp_dir", "steps_completed", "best", "last_steps_mean", "outputs")},
                         indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

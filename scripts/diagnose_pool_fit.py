#!/usr/bin/env python
r"""Is a Difix3D run limited by its fixer or by how far training follows the pool? A diagnostic.

Loads a finished ``difix3d-splatfacto`` run (its ``config.yml``, latest checkpoint and last fix round) and reports:

* ``train_fit_psnr``: its renders of its training views against the training images;
* ``pool_fit_psnr``: its renders at the pool cameras against the pool (fixed) images, inside the pool masks;
* then it keeps training the loaded model for ``--steps`` steps with the run's own optimizer settings (no
  densification), drawing a pool view with probability ``--pool-prob`` and a training view otherwise, and reports
  both fits every ``--report-every`` steps.

``--pool-prob 1`` answers "can this model fit its pool images at all?"; the run's own pool probability answers
"does it, given the training views it must also fit?". If the pool fit rises quickly with ``--pool-prob 1`` but not
at the run's probability, the pool and the training views disagree for this model and the loop's gain is limited by
that, not by cameras or masks (docs/difix3d_quality.md uses it this way). Writes the numbers as JSON to ``--out``.

    python scripts/diagnose_pool_fit.py --run outputs/scene/difix3d-splatfacto/RUN --steps 240 --pool-prob 1 \
        --out /tmp/pool_fit.json
"""
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import tyro

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class PoolFitConfig:
    """Options of the pool-fit diagnostic."""

    run: Path
    """run folder of a difix3d-splatfacto run (holds config.yml, nerfstudio_models/ and difix_rounds/)"""
    out: Path
    """JSON file to write (refused if it exists, unless --overwrite)"""
    steps: int = 240
    """extra training steps on the loaded model (0: only measure)"""
    pool_prob: float = 1.0
    """probability that a step draws a pool view (else a training view)"""
    report_every: int = 80
    """measure both fits every this many steps"""
    seed: int = 0
    """random seed of the view draws"""
    overwrite: bool = False
    """replace --out if it exists"""


def psnr_hwc(pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> float:
    """PSNR of ``[H, W, 3]`` images (inside an ``[H, W, 1]`` mask) with the project's metric."""
    from difix_ns.metrics import psnr

    chw = lambda hwc: hwc.permute(2, 0, 1)[None].float().cpu()  # noqa: E731
    return float(psnr(chw(pred), chw(target), mask=None if mask is None else chw(mask)))


def main(argv: Optional[list] = None) -> None:
    args = tyro.cli(PoolFitConfig, args=argv, description=__doc__)
    from difix_ns.io import refuse_existing

    refuse_existing([args.out], args.overwrite)
    if not 0.0 <= args.pool_prob <= 1.0:
        sys.exit(f"error: --pool-prob must be in [0, 1], got {args.pool_prob}")
    config_path = args.run / "config.yml"
    if not config_path.is_file():
        sys.exit(f"error: {config_path} not found (--run must be a run folder)")
    from difix_ns.nerfstudio.fix_round import load_latest_round
    from difix_ns.splat import install_cpu_support

    install_cpu_support()
    fix_round = load_latest_round(args.run / "difix_rounds")
    if fix_round is None:
        sys.exit(f"error: no completed fix round in {args.run / 'difix_rounds'}")
    from nerfstudio.engine.optimizers import Optimizers
    from nerfstudio.utils.eval_utils import eval_setup

    config, pipeline, _, step = eval_setup(config_path, test_mode="inference")
    model = pipeline.model
    dataset = pipeline.datamanager.train_dataset
    train_images = [dataset.get_image_float32(i)[..., :3] for i in range(len(dataset))]
    train_cameras = dataset.cameras
    pool_cameras = fix_round.cameras
    pool_images = [im.float() / 255.0 for im in fix_round.fixed]
    pool_masks = list(fix_round.masks)

    def render(cameras, i: int) -> torch.Tensor:
        return model.get_outputs_for_camera(cameras[i : i + 1].to(model.device))["rgb"].clamp(0, 1).cpu()

    def fits(at: int) -> dict:
        model.eval()
        with torch.no_grad():
            train = [psnr_hwc(render(train_cameras, i), im) for i, im in enumerate(train_images)]
            pool = [psnr_hwc(render(pool_cameras, i), im, m) for i, (im, m) in enumerate(zip(pool_images, pool_masks))]
        model.train()
        row = {"extra_steps": at, "train_fit_psnr": sum(train) / len(train), "pool_fit_psnr": sum(pool) / len(pool),
               "pool_fit_psnr_per_view": pool}
        print(f"step +{at}: train fit {row['train_fit_psnr']:.2f} dB, pool fit {row['pool_fit_psnr']:.2f} dB")
        return row

    curve = [fits(0)]
    optimizers = Optimizers(config.optimizers, model.get_param_groups())
    model.optimizers = optimizers.optimizers  # splatfacto's strategy reads them in its pre-backward hook
    model.step = step
    generator = torch.Generator().manual_seed(args.seed)
    model.train()
    for k in range(1, args.steps + 1):
        if torch.rand((), generator=generator) < args.pool_prob:
            i = int(torch.randint(len(pool_images), (), generator=generator))
            camera, batch = pool_cameras[i : i + 1], {"image": pool_images[i], "mask": pool_masks[i]}
        else:
            i = int(torch.randint(len(train_images), (), generator=generator))
            camera, batch = train_cameras[i : i + 1], {"image": train_images[i]}
        outputs = model.get_outputs(camera.to(model.device))
        loss = model.get_loss_dict(outputs, {k_: v.to(model.device) for k_, v in batch.items()})["main_loss"]
        optimizers.zero_grad_all()
        loss.backward()
        optimizers.optimizer_step_all()
        if k % args.report_every == 0 or k == args.steps:
            curve.append(fits(k))
    report = {"run": str(args.run), "round_step": fix_round.step, "checkpoint_step": step, "pool_prob": args.pool_prob,
              "pool_views": len(pool_images), "train_views": len(train_images), "curve": curve}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

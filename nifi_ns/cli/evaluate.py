"""``nifi-eval``: evaluate a trained NiFi restorer on a pairs folder: LPIPS/DISTS (and PSNR/SSIM) before and
after restoration.

    nifi-eval --ckpt runs/nifi_train/best.pt --data_root pairs/ --split test --out runs/nifi_train/metrics.json

metrics.json: metrics.aggregate.{lpips,dists,psnr,ssim}_{before,after,delta}, metrics.per_scene, metrics.per_rate,
records[] (one per image). "before" = degraded render vs photo, "after" = restored vs photo.

The same command runs as ``python scripts/eval_nifi.py``. The flags keep the NiFi scripts' underscore
spelling: one tyro option set shared with ``nifi-eval-benchmark`` (:mod:`nifi_ns.cli.evaluation_common`).
"""
from __future__ import annotations

from nifi_ns.cli.evaluation_common import guarded, parse_evaluation_args, run_evaluation, summary_prefix, write_json
from nifi_ns.evaluation.pairs_eval import aggregate, group_by


@guarded
def main(argv=None) -> int:
    args = parse_evaluation_args(argv, __doc__)
    rows, info = run_evaluation(args)
    payload = {
        **info,
        "metrics": {"aggregate": aggregate(rows), "per_scene": group_by(rows, "dataset", "scene"),
                    "per_rate": group_by(rows, "rate"), "per_scene_rate": group_by(rows, "dataset", "scene", "rate")},
        "records": rows,
    }
    out = write_json(args.out, payload)
    agg = payload["metrics"]["aggregate"]
    print(f"{summary_prefix(info)}{out}: {agg['count']} pairs, "
          f"LPIPS-{args.lpips_net} {agg['lpips_before']:.4f} -> {agg['lpips_after']:.4f}, "
          f"DISTS {agg['dists_before']:.4f} -> {agg['dists_after']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

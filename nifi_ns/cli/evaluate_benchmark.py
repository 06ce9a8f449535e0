"""``nifi-eval-benchmark``: the benchmark protocol (NiFi Sec. 4.2): restore every <dataset>/<scene>/rate_<λ>/test
pair and compare with the paper's Table 1.

    nifi-eval-benchmark --ckpt runs/nifi_train/best.pt --data_root pairs/benchmarks --split test \
        --out runs/nifi_train/benchmark_metrics.json

Output: summary.{aggregate, per_dataset, per_dataset_rate, per_scene, per_scene_rate}, paper_comparison (ours minus
the paper's NiFi row, and our "before" minus the paper's HAC++ row, per dataset and λ), records[].
Pairs directly under data_root (no dataset level) are grouped as dataset "default".

The same command runs as ``python scripts/eval_benchmark_nifi.py``. The flags keep the NiFi scripts' underscore
spelling: one tyro option set shared with ``nifi-eval`` (:mod:`nifi_ns.cli.evaluation_common`).
"""
from __future__ import annotations

from nifi_ns.cli.evaluation_common import guarded, parse_evaluation_args, run_evaluation, summary_prefix, write_json
from nifi_ns.evaluation.pairs_eval import aggregate, group_by
from nifi_ns.evaluation.paper import paper_comparison


@guarded
def main(argv=None) -> int:
    args = parse_evaluation_args(argv, __doc__)
    rows, info = run_evaluation(args)
    per_dataset_rate = group_by(rows, "dataset", "rate")
    payload = {
        **info,
        "summary": {
            "aggregate": aggregate(rows), "per_dataset": group_by(rows, "dataset"),
            "per_dataset_rate": per_dataset_rate, "per_scene": group_by(rows, "dataset", "scene"),
            "per_scene_rate": group_by(rows, "dataset", "scene", "rate"),
        },
        "paper_comparison": paper_comparison(per_dataset_rate),
        "records": rows,
    }
    out = write_json(args.out, payload)
    print(f"{summary_prefix(info)}{out}: {len(rows)} pairs in {len(payload['summary']['per_dataset'])} dataset(s); "
          f"{len(payload['paper_comparison']['entries'])} (dataset, rate) cells matched to the paper's Table 1")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The GPU/benchmark scripts under scripts/ parse every invocation written in scripts/gpu_session.sh and
docs/gpu_results/README.md, so a renamed or removed flag fails here instead of on a GPU machine. Only the option
parsing runs (tyro, through each script's own entry point): nothing is trained, loaded or written."""
import re
import shlex
from pathlib import Path

import pytest
import tyro
from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (ROOT / "scripts" / "gpu_session.sh", ROOT / "docs" / "gpu_results" / "README.md")
# Scripts whose invocations these files must contain (a broken extraction must not pass as "nothing to check").
EXPECTED = {"bench_difix3d_quality", "gpu_train_fixer_demo", "bench_nifi_splatfacto", "bench_difix",
            "gpu_difix3d_splatfacto", "bench_postfix_render", "gpu_train_restorer_demo", "gpu_rasterizer_parity",
            "bench_codec_vs_gsplat", "gpu_train_restorer", "bench_fixer", "rescore_renders", "bench_groupnorm",
            "bench_wide_attention", "profile_difix", "bench_upsample_conv", "bench_reference_encoding",
            "bench_unet_attention", "bench_cudnn_conv"}


class _Parsed(Exception):
    def __init__(self, config):
        super().__init__("parsed")
        self.config = config


def invocations() -> list[tuple[str, list[str]]]:
    found = []
    for source in SOURCES:
        text = source.read_text().replace("\\\n", " ")
        for name, rest in re.findall(r"python scripts/(\w+)\.py([^`|;&\n]*)", text):
            if name in EXPECTED:
                rest = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", rest)  # ${BUDGET:-480} parses as its default
                found.append((name, shlex.split(rest.replace("$OUT", "/tmp/out"))))
    return found



def parse(name: str, argv: list[str]):
    """The script's config as its own entry point parses `argv` (tyro.cli intercepted right after parsing)."""
    module = load_script(name)
    real_cli = tyro.cli

    def cli(*args, **kwargs):
        raise _Parsed(real_cli(*args, **kwargs))

    entry = getattr(module, "parse_args", None) or module.main
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tyro, "cli", cli)
        with pytest.raises(_Parsed) as parsed:
            entry(argv)
    return parsed.value.config


def test_documented_invocations_parse():
    calls = invocations()
    assert {name for name, _ in calls} == EXPECTED
    configs = {}
    for name, argv in calls:
        configs.setdefault(name, []).append(parse(name, argv))
    quality = configs["bench_difix3d_quality"][0]
    assert quality.downscale_factor == [2, 1, 1] and quality.train_every == [5, 3, 3]
    assert quality.steps == [3000, 2000, 2000] and len(quality.data) == 3
    assert [a.split("=")[0] for a in quality.ablate] == ["identity_nodensify", "teacher_strong"]
    assert quality.ablate[0] == "identity_nodensify=identity --pipeline.model.densify-from-pool-views False"
    postfix = configs["bench_postfix_render"][0]
    assert postfix.sizes == ["real"] and postfix.batch_sizes == [8]
    assert postfix.compile_cache_dir == "/tmp/difix_compile_cache"
    rounds = configs["gpu_difix3d_splatfacto"][0]
    assert rounds.skip_tiny and not rounds.skip_sdturbo and rounds.repeats == 1
    assert rounds.prepare_fixer == "auto" and not rounds.ablate_prepare_fixer  # as ns-train runs on CUDA
    nifi = configs["bench_nifi_splatfacto"][0]
    assert (nifi.budget_steps, nifi.deadline_s, nifi.work_dir) == (2000, 300.0, Path("/tmp/nifi_runs"))
    budget_only = [(c.budgets_from.name, c.data.name, c.downscale_factor, c.budget_steps)
                   for c in configs["bench_nifi_splatfacto"] if c.budgets_from is not None]  # job nifi_budget
    assert budget_only == [("bench_nifi_splatfacto_h100_nifi3_fox.json", "fox", 2, 7000),
                           ("bench_nifi_splatfacto_h100_nifi3_castle.json", "castle-P30", 1, 4000),
                           ("bench_nifi_splatfacto_h100_nifi3_herz.json", "Herz-Jesus-P25", 1, 4000)]
    # 300: "${BENCH_BUDGET_S:-300}"; 60: tuning; 220: inductor
    assert {c.budget_s for c in configs["bench_difix"]} == {200.0, 170.0, 220.0, 240.0, 300.0, 30.0, 60.0}
    assert any(c.inductor == ["$setting"] and c.refs == [1] for c in configs["bench_difix"])  # the inductor job
    assert configs["gpu_train_fixer_demo"][0].work == Path("/tmp/fixer_demo_work")


def test_flag_spellings_kept():
    """Spellings that differ from tyro's defaults: an alias, store_false flags, underscores, a repeated option."""
    assert parse("bench_difix", ["--quick", "--no-anchor", "--no-eager"]).smoke
    assert not parse("bench_fixer", ["--no-compile"]).compile
    restorer = parse("gpu_train_restorer", ["--out", "o.json", "--train_seconds", "5", "--max_steps", "3"])
    assert (restorer.train_seconds, restorer.max_steps) == (5.0, 3)
    assert parse("bench_nifi_splatfacto", ["--data", "d", "--out", "o", "--target-mb"]).target_mb == []
    with pytest.raises(SystemExit):
        parse("bench_difix3d_quality", ["--data", "d", "--out", "o", "--variants", "nope"])


def test_fixer_demo_scales():
    """--scale picks the sizes of the fixer demonstration; sizes given on the command line override them."""
    module = load_script("gpu_train_fixer_demo")
    gpu = module.resolved_scale(parse("gpu_train_fixer_demo", ["--out", "o", "--budget-s", "480"]))
    assert (gpu.budget_s, gpu.shrink, gpu.splat_steps, gpu.crop, gpu.train_seconds) == (480.0, 1, 1500, 256, 170.0)
    cpu = module.resolved_scale(parse("gpu_train_fixer_demo",
                                      ["--out", "o", "--scale", "cpu", "--train-seconds", "60"]))
    assert (cpu.shrink, cpu.train_seconds, cpu.budget_s, cpu.architecture) == (4, 60.0, 3600.0, "small")
    smoke = module.resolved_scale(parse("gpu_train_fixer_demo", ["--out", "o", "--smoke-cpu", "--scale", "cpu"]))
    assert (smoke.architecture, smoke.max_frames) == ("tiny", 8)

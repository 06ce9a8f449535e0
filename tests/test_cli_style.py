"""One command-line style: every console tool of ``difix_ns.cli`` / ``nifi_ns.cli`` is a tyro dataclass, and the
tools of the reference scripts accept the scripts' commands exactly as written (underscored flags, single bool
flags, lists). Parsing only: nothing is run."""
from __future__ import annotations

import pkgutil
from pathlib import Path

import pytest

from difix_ns.cli.tyro_style import option_strings, parse

ROOT = Path(__file__).resolve().parents[1]


def test_no_cli_module_uses_argparse():
    offenders = [f"{pkg}/{m.name}" for pkg in ("difix_ns/cli", "nifi_ns/cli")
                 for m in pkgutil.iter_modules([str(ROOT / pkg)])
                 if "import argparse" in (ROOT / pkg / f"{m.name}.py").read_text()]
    assert offenders == []


def test_reference_commands_parse_as_written():
    from difix_ns.cli.fix_images import FixImagesConfig
    from nifi_ns.cli.evaluation_common import EvaluationConfig
    from nifi_ns.cli.prepare_benchmark_pairs import PrepareBenchmarkPairsConfig
    from nifi_ns.cli.train import TrainConfig

    fix = parse(FixImagesConfig, ["--input_image", "in.png", "--ref_image", "ref.png", "--output_dir", "out",
                                  "--model_name", "nvidia/difix_ref", "--timestep", "199", "--video"])
    assert (fix.input_image, fix.ref_image, fix.output_dir, fix.timestep, fix.video) == (
        "in.png", "ref.png", "out", 199, True)
    assert fix.batch_size == 4 and fix.compile and fix.ref_match == "auto"
    train = parse(TrainConfig, ["--config", "configs/default.yaml", "--data_root", "pairs/", "--exp", "runs/x",
                                "--smoke_test"])
    assert train.smoke_test and not train.resume and train.data_root == "pairs/"
    prep = parse(PrepareBenchmarkPairsConfig, [
        "--dataset", "tanks_temples", "--dataset_root", "d", "--out", "p", "--rates", "0.1", "0.5", "1.0",
        "--compression_method", "precomputed", "--compressed_root", "/c", "--max-num-iterations", "7"])
    assert prep.rates == (0.1, 0.5, 1.0) and prep.compression_method == "precomputed"
    assert prep.max_num_iterations == 7 and str(prep.compressed_root) == "/c"
    ev = parse(EvaluationConfig, ["--ckpt", "b.pt", "--data_root", "p", "--out", "m.json", "--scenes", "a", "b"])
    assert ev.split == "test" and ev.scenes == ("a", "b") and ev.lpips_net == "alex"
    assert {"--smoke_test", "--data_root", "--max_steps", "--model_path"} <= option_strings(TrainConfig)


@pytest.mark.parametrize("argv, needle", [
    (["--scene", "s", "--out", "o", "--rates"], "--rates needs at least one value"),
    (["--scene", "s", "--out", "o", "--splits", "val"], "--splits"),
    (["--out", "o"], "--scene"),
])
def test_bad_or_missing_options_exit_2_naming_the_option(argv, needle, capsys):
    from nifi_ns.cli.build_3dgs_and_compress import parse_args

    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    captured = capsys.readouterr()
    assert info.value.code == 2 and needle in " ".join((captured.err + captured.out).split())


def test_help_keeps_example_commands_on_their_own_lines():
    """tyro joins a docstring line to the next unless a blank or indented line follows: an example command in a
    tool's or script's docstring followed directly by prose shows up in ``--help`` with that prose glued to it."""
    import ast

    glued = []
    for path in sorted([*ROOT.glob("scripts/*.py"), *ROOT.glob("difix_ns/cli/*.py"), *ROOT.glob("nifi_ns/cli/*.py")]):
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False) or ""
        lines = doc.split("\n")
        for line, after in zip(lines, lines[1:]):
            command = line.startswith(" ") and line.lstrip().startswith(("python ", "ns-", "difix-", "source "))
            if command and after.strip() and not after.startswith(" "):
                glued.append(f"{path.relative_to(ROOT)}: {line.strip()[:60]}... + {after[:40]}")
    assert glued == []

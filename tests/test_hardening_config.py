"""A hostile config.yml runs nothing: plugin tools and stock ns-* commands load configs with a restricted loader.

Configs written by nerfstudio's own ``yaml.dump`` (every registered method, stock and plugin) still load and dump
back identically.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import difix_ns  # noqa: F401  (the plugin import hook, as every ns-* command runs it)
from difix_ns.safe_config import UnsafeConfigError, load_run_config, safe_load_config_text

REPO = Path(__file__).resolve().parents[1]


def _hostile(tmp_path: Path, marker: Path, wrap: bool = True) -> Path:
    payload = f"!!python/object/apply:os.system ['touch {marker}']"
    text = (f"!!python/object:nerfstudio.engine.trainer.TrainerConfig\nmethod_name: x\noutput_dir: {payload}\n"
            if wrap else payload + "\n")
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text", [
    "!!python/object/apply:os.system ['true']",
    "!!python/object/apply:subprocess.Popen [['true']]",
    "!!python/object/new:subprocess.Popen [['true']]",
    "!!python/name:os.system ''",
    "!!python/module:os ''",
    "!!python/object:subprocess.Popen {}",
    "!!python/name:nerfstudio.utils.eval_utils.os ''",  # a trusted module's re-export of a foreign module
    "!!python/object/apply:nerfstudio.utils.eval_utils.os.system ['true']",
    "!!python/object:nerfstudio.engine.trainer.Trainer {}",  # a trusted class that is not a config dataclass
    "!!python/object/apply:pathlib.Path {args: ['a'], state: {x: 1}}",
])
def test_restricted_loader_refuses(text):
    with pytest.raises(UnsafeConfigError, match="refusing"):
        safe_load_config_text(text)


def test_every_registered_method_config_roundtrips():
    from nerfstudio.configs.method_configs import all_methods

    assert {"difix3d", "difix3d-splatfacto", "nifi-splatfacto", "nerfacto", "splatfacto"} <= set(all_methods)
    for name, config in all_methods.items():
        text = yaml.dump(config)
        assert yaml.dump(safe_load_config_text(text)) == text, name


def test_load_run_config_errors(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(SystemExit, match="config.yml.*refusing"):
        load_run_config(_hostile(tmp_path, marker))
    (tmp_path / "config.yml").write_text("{{{ not yaml")
    with pytest.raises(SystemExit, match="not a readable"):
        load_run_config(tmp_path / "config.yml")
    (tmp_path / "config.yml").write_text("a: 1\n")
    with pytest.raises(SystemExit, match="no TrainerConfig"):
        load_run_config(tmp_path / "config.yml")
    assert not marker.exists()


def test_plugin_tools_refuse_hostile_config(tmp_path):
    from difix_ns.render.trajectory import TrajectoryRender
    from nifi_ns.cli.export import ExportNix

    marker = tmp_path / "pwned"
    config = _hostile(tmp_path, marker)
    with pytest.raises(SystemExit, match="refusing"):
        ExportNix(output_dir=tmp_path / "out", load_config=config, rate=0.5).main()
    with pytest.raises(SystemExit, match="refusing"):
        TrajectoryRender(load_config=config, output_path=tmp_path / "t.mp4").main()
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_stock_eval_setup_and_train_are_patched(tmp_path):
    """In-process: nerfstudio's eval_setup (ns-eval/-render/-viewer/-export) and ns-train --load-config."""
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.scripts import train
    from nerfstudio.utils.eval_utils import eval_setup

    marker = tmp_path / "pwned"
    with pytest.raises(SystemExit, match="refusing"):
        eval_setup(_hostile(tmp_path, marker, wrap=False))
    config = all_methods["nerfacto"]
    config.load_config = _hostile(tmp_path, marker)
    try:
        with pytest.raises(SystemExit, match="refusing"):
            train.main(config)
    finally:
        config.load_config = None
    assert not marker.exists()


def test_stock_ns_eval_subprocess(tmp_path):
    """The real import order of a stock command: eval_utils is mid-import when nerfstudio loads the plugin."""
    marker = tmp_path / "pwned"
    config = _hostile(tmp_path, marker)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "nerfstudio.scripts.eval", "--load-config", str(config),
                             "--output-path", str(tmp_path / "o.json")], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode != 0
    assert "refusing to load config" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()

"""torch >= 2.6 (weights_only=True by default) loads nerfstudio checkpoints once difix_ns is imported.

The checkpoint is written by nerfstudio's own `Trainer.save_checkpoint` with real `Optimizers` and an
`ExponentialDecayScheduler` (whose numpy float64 learning rates are what breaks the safe unpickler), then read back
through nerfstudio's own loaders: `eval_utils.eval_load_checkpoint` (ns-eval / ns-render / ns-viewer) and
`Trainer._load_checkpoint` (--load-dir / --load-checkpoint resume).
"""
from __future__ import annotations

import functools
import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import difix_ns  # noqa: F401  (installs the allow-list, as every ns-* command does through the entry points)


class _TinyPipeline(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.loaded_step = None

    def load_pipeline(self, state, step):
        self.load_state_dict(state)
        self.loaded_step = step


def _optimizers(pipeline):
    from nerfstudio.engine.optimizers import AdamOptimizerConfig, Optimizers
    from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

    config = {"lin": {"optimizer": AdamOptimizerConfig(lr=1e-2),
                      "scheduler": ExponentialDecaySchedulerConfig(lr_final=1e-4, max_steps=10)}}
    return Optimizers(config, {"lin": list(pipeline.parameters())})


def _fake_trainer(tmp_path: Path, pipeline) -> SimpleNamespace:
    from nerfstudio.engine.trainer import GradScaler

    ckpt_dir = tmp_path / "nerfstudio_models"
    config = SimpleNamespace(save_only_latest_checkpoint=True, load_dir=ckpt_dir, load_step=None,
                             load_checkpoint=None, load_scheduler=True)
    return SimpleNamespace(checkpoint_dir=ckpt_dir, pipeline=pipeline, optimizers=_optimizers(pipeline),
                           grad_scaler=GradScaler(enabled=False), config=config, _start_step=0)


@pytest.fixture()
def nerfstudio_checkpoint(tmp_path) -> Path:
    from nerfstudio.engine.trainer import Trainer

    pipeline = _TinyPipeline()
    trainer = _fake_trainer(tmp_path, pipeline)
    for _ in range(3):  # real optimiser + scheduler steps put numpy float64 lrs into the state dicts
        pipeline.lin(torch.ones(1, 3)).sum().backward()
        trainer.optimizers.optimizer_step_all()
        trainer.optimizers.scheduler_step_all(0)
    Trainer.save_checkpoint(trainer, step=7)
    path = trainer.checkpoint_dir / "step-000000007.ckpt"
    assert isinstance(torch.load(path, map_location="cpu")["schedulers"]["lin"]["_last_lr"][0], np.floating)
    return path


def test_checkpoint_needs_the_allow_list_without_difix_ns(nerfstudio_checkpoint):
    """Guard: in a fresh interpreter without difix_ns, torch's default load rejects the numpy scalar."""
    code = (f"import torch\ntry:\n    torch.load({str(nerfstudio_checkpoint)!r}, map_location='cpu')\n"
            "except Exception as e:\n    print('REJECTED', e)\nelse:\n    print('LOADED')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "REJECTED" in out and "numpy" in out


def test_entry_point_discovery_installs_the_allow_list(nerfstudio_checkpoint):
    """Every ns-* command imports nerfstudio's method registry, which loads the plugin's entry points: that alone
    (no explicit `import difix_ns`) must make the default safe `torch.load` accept the checkpoint."""
    code = (f"import torch\nimport nerfstudio.configs.method_configs\n"
            f"state = torch.load({str(nerfstudio_checkpoint)!r}, map_location='cpu')\nprint('LOADED', state['step'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "LOADED 7" in out.stdout, out.stderr[-3000:]


def test_ns_eval_loader_reads_trainer_checkpoint(nerfstudio_checkpoint):
    from nerfstudio.utils.eval_utils import eval_load_checkpoint

    pipeline = _TinyPipeline()
    config = SimpleNamespace(load_dir=nerfstudio_checkpoint.parent, load_step=None)
    path, step = eval_load_checkpoint(config, pipeline)
    assert path == nerfstudio_checkpoint and step == 7 and pipeline.loaded_step == 7
    saved = torch.load(nerfstudio_checkpoint, map_location="cpu")  # default weights_only=True on torch >= 2.6
    torch.testing.assert_close(pipeline.lin.weight, saved["pipeline"]["lin.weight"])


def test_trainer_resume_reads_trainer_checkpoint(nerfstudio_checkpoint, tmp_path):
    from nerfstudio.engine.trainer import Trainer

    pipeline = _TinyPipeline()
    trainer = _fake_trainer(tmp_path / "resume", pipeline)
    trainer.config.load_dir = nerfstudio_checkpoint.parent
    Trainer._load_checkpoint(trainer)
    assert trainer._start_step == 8 and pipeline.loaded_step == 7
    lr = trainer.optimizers.optimizers["lin"].param_groups[0]["lr"]
    assert isinstance(lr, np.floating) and 1e-4 < lr < 1e-2


def _rewrite_pickle(path: Path, old: bytes, new: bytes) -> Path:
    """Copy of a torch zip checkpoint with one module path replaced inside data.pkl (GLOBAL opcodes are text)."""
    out = path.with_name("rewritten.ckpt")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data.pkl"):
                assert old in data
                data = data.replace(old, new)
            dst.writestr(item, data)
    return out


def test_checkpoint_from_the_other_numpy_major_version_loads(nerfstudio_checkpoint):
    here = b"numpy._core.multiarray" if np.__version__ >= "2" else b"numpy.core.multiarray"
    other = b"numpy.core.multiarray" if here == b"numpy._core.multiarray" else b"numpy._core.multiarray"
    moved = _rewrite_pickle(nerfstudio_checkpoint, here + b"\nscalar", other + b"\nscalar")
    state = torch.load(moved, map_location="cpu")
    assert state["step"] == 7 and isinstance(state["optimizers"]["lin"]["param_groups"][0]["lr"], np.floating)


def test_other_globals_are_still_rejected(tmp_path):
    """Only the numpy allow-list is added: arbitrary callables in a pickle still fail the safe load."""
    path = tmp_path / "evil.ckpt"
    torch.save({"step": 1, "hook": functools.partial(print, "side effect")}, path)
    with pytest.raises(pickle.UnpicklingError, match="functools.partial"):
        torch.load(path, map_location="cpu")
    buf = io.BytesIO()
    torch.save({"arr": np.arange(4.0), "f": np.float32(2.5)}, buf)
    buf.seek(0)
    loaded = torch.load(buf)
    assert loaded["arr"].tolist() == [0.0, 1.0, 2.0, 3.0] and loaded["f"] == np.float32(2.5)

"""Loading the Difix3D fixer ahead of the first round on a worker thread (``--pipeline.prepare-fixer``)."""
from __future__ import annotations

import shutil
import threading
from functools import partial

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType

from difix_ns.fixer import DifixFixer
from difix_ns.fixers.config import FixerConfig
from difix_ns.models.loading import parameters_on_meta
from difix_ns.nerfstudio.fix_strategy import warm_up_batches, warm_up_fixer
from difix_ns.nerfstudio.fixer_loading import LazyFixer


def cameras(sizes: list[tuple[int, int]]) -> Cameras:
    n = len(sizes)
    return Cameras(
        camera_to_worlds=torch.eye(4)[:3].expand(n, 3, 4).clone(),
        fx=torch.full((n, 1), 50.0),
        fy=torch.full((n, 1), 50.0),
        cx=torch.tensor([[w / 2] for _, w in sizes]),
        cy=torch.tensor([[h / 2] for h, _ in sizes]),
        height=torch.tensor([[h] for h, _ in sizes]),
        width=torch.tensor([[w] for _, w in sizes]),
        camera_type=CameraType.PERSPECTIVE,
    )


class _RecordsThread:
    """A fixer that notes the thread each fix runs on."""

    def __init__(self, fixer, threads):
        self.fixer, self.threads = fixer, threads

    def fix(self, *args):
        self.threads.append(threading.current_thread().name)
        return self.fixer.fix(*args)

    def __getattr__(self, name):
        return getattr(self.fixer, name)


def test_parameters_on_meta_only_moves_the_building_threads_parameters():
    inside, release, built = threading.Event(), threading.Event(), {}

    def build_in_block():
        with parameters_on_meta():
            inside.set()
            release.wait(10)
            built["worker"] = torch.nn.Linear(3, 3)

    worker = threading.Thread(target=build_in_block)
    worker.start()
    assert inside.wait(10)
    built["main"] = torch.nn.Linear(3, 3)  # e.g. training registering Gaussians while the fixer loads
    release.set()
    worker.join()
    assert built["main"].weight.device.type == "cpu" and built["worker"].weight.device.type == "meta"
    assert torch.nn.Linear(3, 3).weight.device.type == "cpu"  # nothing left patched


def test_background_preparation_warms_the_fixer_and_changes_nothing(tiny_difix_ref):
    lazy = LazyFixer(FixerConfig(model_name=str(tiny_difix_ref), device="cpu", dtype="float32"))
    rng = torch.get_rng_state()
    assert lazy.prepare_in_background(partial(warm_up_fixer, cameras=cameras([(64, 96), (64, 96), (72, 80)])))
    assert not lazy.prepare_in_background()  # one preparation at a time
    fixer = lazy.get()
    assert torch.equal(torch.get_rng_state(), rng)  # loading and the warm-up drew nothing from the global RNG
    assert lazy.prepared_in_background and lazy.warmup_error is None
    assert lazy.load_seconds > 0 and lazy.warmup_seconds > 0
    assert lazy.get() is fixer
    images, refs = torch.rand(2, 3, 64, 96), torch.rand(2, 1, 3, 64, 96)
    fresh = DifixFixer(model_name=str(tiny_difix_ref), device="cpu", dtype="float32")
    expected = fresh.fix(images, refs)
    assert torch.equal(fixer.fix(images, refs), expected)  # the warm-up left no state behind
    rounds = lazy.round_fixer()  # fixes on the thread that warmed up, the same numbers
    threads = []
    rounds._fixer = _RecordsThread(fixer, threads)
    assert rounds.uses_references and torch.equal(rounds.fix(images, refs), expected)
    assert threads and all(name.startswith("difix3d-fixer") for name in threads)


def test_the_warm_up_fixes_one_batch_of_each_shape_a_round_runs(tiny_difix_ref):
    assert warm_up_batches([(64, 96)] * 10, 4) == [((64, 96), 4), ((64, 96), 2)]
    assert warm_up_batches([(64, 96)] * 8 + [(72, 80)] * 3, 4) == [((64, 96), 4), ((72, 80), 3)]
    assert warm_up_batches([(64, 96)] * 3, None) == [((64, 96), 3)]
    fixer = DifixFixer(model_name=str(tiny_difix_ref), device="cpu", dtype="float32", batch_size=2)
    calls = []

    class Records:
        def __getattr__(self, name):
            return getattr(fixer, name)

        def fix(self, images, refs=None, cameras=None):
            calls.append((tuple(images.shape), None if refs is None else tuple(refs.shape)))
            return fixer.fix(images, refs, cameras)

    warm_up_fixer(Records(), cameras([(64, 96)] * 5 + [(72, 80)]))
    assert calls == [((2, 3, 64, 96), (2, 1, 3, 64, 96)), ((1, 3, 64, 96), (1, 1, 3, 64, 96)),
                     ((1, 3, 72, 80), (1, 1, 3, 72, 80))]


def test_fixers_that_cannot_load_in_the_background_load_at_first_use(tiny_difix_ref):
    on_cpu = LazyFixer(FixerConfig(model_name=str(tiny_difix_ref), device="cpu"))
    assert not on_cpu.prepare_in_background(cuda_only=True)  # "auto" on a CPU
    identity = LazyFixer(FixerConfig(kind="identity"))
    assert not identity.prepare_in_background()
    teacher = LazyFixer(FixerConfig(kind="teacher"))  # not even built (without a teacher config it cannot be)
    assert not teacher.prepare_in_background()
    rng = torch.get_rng_state()
    tiny = LazyFixer(FixerConfig(model_name="random-tiny", device="cpu"))
    assert not tiny.prepare_in_background()  # building random-tiny seeds the RNG: it stays at the first round
    assert torch.equal(torch.get_rng_state(), rng)
    assert not on_cpu.prepared_in_background and on_cpu.fixer is None
    assert on_cpu.get() is not None and on_cpu.load_seconds > 0
    assert on_cpu.round_fixer() is on_cpu.get()  # rounds call it on their own thread


def truncated_copy(model_dir, tmp_path):
    """``model_dir`` copied with its UNet weights file cut short."""
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return broken


def test_a_background_loading_error_is_raised_at_the_first_round(tmp_path, tiny_difix_ref):
    lazy = LazyFixer(FixerConfig(model_name=str(truncated_copy(tiny_difix_ref, tmp_path)), device="cpu"))
    assert lazy.prepare_in_background()
    with pytest.raises(Exception, match="diffusion_pytorch_model.safetensors"):
        lazy.get()


def test_jobs_run_on_the_fixer_thread_after_its_preparation(tmp_path, tiny_difix_ref):
    # --pipeline.fix-lag-steps hands a round's fix to the fixer thread this way while training goes on.
    images, refs = torch.rand(1, 3, 64, 96), torch.rand(1, 1, 3, 64, 96)
    lazy = LazyFixer(FixerConfig(model_name=str(tiny_difix_ref), device="cpu", dtype="float32"))
    assert lazy.submit(lambda fixer: fixer) is None  # no fixer thread: the caller runs the job itself
    assert lazy.prepare_in_background()
    job = lazy.submit(lambda fixer: (threading.current_thread().name, fixer.fix(images, refs)))
    thread_name, fixed = job.result(timeout=120)
    assert thread_name.startswith("difix3d-fixer")
    assert torch.equal(fixed, lazy.get().fix(images, refs))

    failing = LazyFixer(FixerConfig(model_name=str(truncated_copy(tiny_difix_ref, tmp_path)), device="cpu"))
    assert failing.prepare_in_background()
    with pytest.raises(Exception, match="diffusion_pytorch_model.safetensors"):
        failing.submit(lambda fixer: fixer).result(timeout=120)  # the job reports the loading error...
    with pytest.raises(Exception, match="diffusion_pytorch_model.safetensors"):
        failing.get()  # ...and so does the first use on the training thread

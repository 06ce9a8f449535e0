"""The fixer of a Difix3D run: built and loaded when a round first needs it, or prepared ahead on a fixer thread.

Loading an SD-Turbo-sized fixer takes ~0.9 s on an H100, and the first fix of a process 1-3 s more than later ones
(cuDNN choosing and building an algorithm for every new convolution shape, CUDA loading kernels, encoding the
prompt). Done at the first fix round, both stall training there. :meth:`LazyFixer.prepare_in_background`
(``--pipeline.prepare-fixer``, on CUDA by default) moves them to a thread of their own that starts with training: it
loads the fixer and runs one warm-up fix of black images at the first round's sizes on its own CUDA stream
(:func:`difix_ns.nerfstudio.fix_strategy.warm_up_fixer`) while the training thread goes on. The rounds' fixes then
run on that same thread (:meth:`LazyFixer.round_fixer`; the training thread waits for each, so a round still
completes before the next training step): PyTorch keeps cuDNN's execution plans and library handles per thread, so
only fixes on the warmed-up thread find them ready (an H100 run with the warm-up on another thread still spent
1.5 s on the first round's fix against 0.63 s for later rounds).

Results do not change: the warm-up's output is discarded and its reference latents dropped, and neither loading nor
fixing draws from the global RNG (CPU tests). Only Difix-layout models load off the training thread
(:meth:`difix_ns.fixer.DifixFixer.can_load_off_thread`): their modules get meta parameters for the loading thread
alone (:func:`difix_ns.models.loading.parameters_on_meta`). The first attempt, in session 14, built them inside
accelerate's ``init_empty_weights``, which moves EVERY thread's new parameters to ``meta`` while it runs; Gaussians
that densification registered meanwhile landed there and gsplat failed ("opacities must be a CUDA tensor"). The
NVIDIA Fixer layout, whose modules initialise from the global RNG, ``random-tiny``, whose build seeds it, and the
teacher / identity fixers load on the training thread at the first round.

One process-wide setting changes while a warm-up or round fix runs: cuDNN autotuning is off (``fixer.eager()``, as in
every round), which only matters to convolutions on the training thread meanwhile (splatfacto has none; an
evaluation image's LPIPS would pick its algorithms by heuristics).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

from difix_ns.fixers.config import FixerConfig

__all__ = ["LazyFixer"]


class LazyFixer:
    """Builds and loads the fixer on first use (:meth:`get`), or ahead of it on a worker thread
    (:meth:`prepare_in_background`). A plain object, so the fixer never joins the module tree."""

    def __init__(self, config: FixerConfig, pipeline: Any = None) -> None:
        self.config = config
        self.fixer: Any = None
        self._pipeline = pipeline  # gives a teacher fixer the world frame of the cameras it is asked for
        self._lock = threading.Lock()
        self._thread: Optional[ThreadPoolExecutor] = None  # the fixer thread, once prepare_in_background started it
        self._preparing: Optional[Future] = None
        self._prepared: Any = None
        self._error: Optional[BaseException] = None
        self.load_seconds: Optional[float] = None
        """How long loading the fixer took (building it, reading its weights), on whichever thread loaded it."""
        self.warmup_seconds: Optional[float] = None
        """How long the background warm-up fix took (None without one)."""
        self.warmup_error: Optional[str] = None
        """Why the warm-up fix failed, if it did (the fixer is still used; the first round then runs cold)."""
        self.prepared_in_background = False
        """True once :meth:`prepare_in_background` started the fixer thread."""

    def _build(self) -> Any:
        from difix_ns.fixers.factory import build_fixer
        from difix_ns.fixers.frames import WorldFrame

        frame = WorldFrame.of_pipeline(self._pipeline) if self._pipeline is not None else None
        return build_fixer(self.config, student_frame=frame)

    def get(self) -> Any:
        """The fixer, loaded. Waits for a background preparation to finish (and re-raises its loading error)."""
        with self._lock:
            if self._preparing is not None:
                self._preparing.result()  # _prepare catches everything: the outcome is in _prepared / _error
                self._preparing = None
                prepared, error, self._prepared, self._error = self._prepared, self._error, None, None
                if error is not None:
                    raise error
                self.fixer = prepared
            if self.fixer is None:
                started = time.perf_counter()
                fixer = self._build()
                load = getattr(fixer, "load", None)  # DifixFixer reads its weights lazily: load them here, timed
                if callable(load):
                    load()
                self.load_seconds = time.perf_counter() - started
                self.fixer = fixer
            return self.fixer

    def prepare_in_background(self, warm_up: Optional[Callable[[Any], None]] = None, cuda_only: bool = False) -> bool:
        """Load the fixer, then run ``warm_up(fixer)``, on a worker thread; :meth:`get` waits for it. The fixer is
        built (and its model name resolved) on this thread. Returns False, starting nothing, when the fixer is
        already loaded or being prepared, cannot load off this thread (see the module docstring), or, with
        ``cuda_only``, does not run on CUDA. A failed warm-up is recorded in :attr:`warmup_error`, not raised."""
        with self._lock:
            if self.fixer is not None or self._preparing is not None:
                return False
            if getattr(self.config, "kind", "difix") != "difix":  # teachers may load a whole run: build them once
                return False
            fixer = self._build()
            if cuda_only and getattr(getattr(fixer, "device", None), "type", None) != "cuda":
                return False
            can_load_off_thread = getattr(fixer, "can_load_off_thread", None)
            if not callable(can_load_off_thread) or not can_load_off_thread():
                return False
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="difix3d-fixer")
            self._preparing = self._thread.submit(self._prepare, fixer, warm_up)
            self.prepared_in_background = True
            return True

    def round_fixer(self) -> Any:
        """The fixer for fix rounds: loaded (:meth:`get`), its ``fix`` run on the fixer thread when
        :meth:`prepare_in_background` started one (where the warm-up left cuDNN's plans), else the fixer itself."""
        fixer = self.get()
        return fixer if self._thread is None else FixesOnThread(fixer, self._thread)

    def submit(self, job: Callable[[Any], Any]) -> Optional[Future]:
        """Run ``job(fixer)`` on the fixer thread, after whatever it is doing (loading, warming up, an earlier job),
        and return its future; None, starting nothing, when :meth:`prepare_in_background` started no thread (the
        caller then runs the job itself). A loading error is raised by the future, and again by :meth:`get`."""
        with self._lock:
            if self._thread is None:
                return None
            return self._thread.submit(self._run_job, job)

    def _run_job(self, job: Callable[[Any], Any]) -> Any:
        fixer = self.fixer if self.fixer is not None else self._prepared  # this thread prepared it: it is done
        if fixer is None:
            raise self._error if self._error is not None else RuntimeError("the fixer was not loaded")
        return job(fixer)

    def _prepare(self, fixer: Any, warm_up: Optional[Callable[[Any], None]]) -> None:
        try:
            started = time.perf_counter()
            fixer.load()
            self.load_seconds = time.perf_counter() - started
        except BaseException as err:  # noqa: BLE001  (re-raised on the training thread by get())
            self._error = err
            return
        self._prepared = fixer
        if warm_up is None:
            return
        started = time.perf_counter()
        try:
            warm_up(fixer)
        except Exception as err:  # noqa: BLE001  (the loaded fixer is still good; the first round runs cold)
            self.warmup_error = f"{type(err).__name__}: {err}"
        self.warmup_seconds = time.perf_counter() - started


class FixesOnThread:
    """``fixer`` with its ``fix`` calls run on ``thread`` (the caller waits for each); all else is the fixer's."""

    def __init__(self, fixer: Any, thread: ThreadPoolExecutor) -> None:
        self._fixer = fixer
        self._thread = thread

    def fix(self, *args: Any, **kwargs: Any) -> Any:
        return self._thread.submit(self._fixer.fix, *args, **kwargs).result()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fixer, name)

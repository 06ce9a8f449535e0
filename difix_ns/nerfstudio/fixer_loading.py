"""The fixer of a Difix3D run: built and loaded when a round first needs it, or prepared ahead on a worker thread.

Loading an SD-Turbo-sized fixer takes ~0.7 s on an H100, and the first fix of a process 1-3 s more than later ones
(cuDNN choosing an algorithm for every new convolution shape, CUDA loading kernels, encoding the prompt). Done at the
first fix round, both stall training there. :meth:`LazyFixer.prepare_in_background` (``--pipeline.prepare-fixer``,
on CUDA by default) moves them to a worker thread that starts with training: it loads the fixer and runs one
warm-up fix of black images at the first round's sizes on its own CUDA stream
(:func:`difix_ns.nerfstudio.fix_strategy.warm_up_fixer`) while the training thread goes on. The first round then
waits only for whatever is left of that.

Results do not change: the warm-up's output is discarded and its reference latents dropped, and neither loading nor
fixing draws from the global RNG, so a run trains bit for bit as with loading at the first round (CPU test). Only
Difix-layout models load off the training thread (:meth:`difix_ns.fixer.DifixFixer.can_load_off_thread`): their
modules get meta parameters for the loading thread alone (:func:`difix_ns.models.loading.parameters_on_meta`).
The first attempt, in session 14, built them inside accelerate's ``init_empty_weights``, which moves EVERY thread's
new parameters to ``meta`` while it runs; Gaussians that densification registered meanwhile landed there and
gsplat failed ("opacities must be a CUDA tensor"). The NVIDIA Fixer layout, whose modules initialise from the
global RNG, and the teacher / identity fixers load on the training thread at the first round.

One process-wide setting changes while the warm-up runs: cuDNN autotuning is off (``fixer.eager()``, as in every
round), which only matters to convolutions on the training thread meanwhile (splatfacto has none; an evaluation
image's LPIPS would pick its algorithms by heuristics).
"""

from __future__ import annotations

import threading
import time
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
        self._worker: Optional[threading.Thread] = None
        self._prepared: Any = None
        self._error: Optional[BaseException] = None
        self.load_seconds: Optional[float] = None
        """How long loading the fixer took (building it, reading its weights), on whichever thread loaded it."""
        self.warmup_seconds: Optional[float] = None
        """How long the background warm-up fix took (None without one)."""
        self.warmup_error: Optional[str] = None
        """Why the warm-up fix failed, if it did (the fixer is still used; the first round then runs cold)."""
        self.prepared_in_background = False
        """True once :meth:`prepare_in_background` started a worker."""

    def _build(self) -> Any:
        from difix_ns.fixers.factory import build_fixer
        from difix_ns.fixers.frames import WorldFrame

        frame = WorldFrame.of_pipeline(self._pipeline) if self._pipeline is not None else None
        return build_fixer(self.config, student_frame=frame)

    def get(self) -> Any:
        """The fixer, loaded. Waits for a background preparation to finish (and re-raises its loading error)."""
        with self._lock:
            if self._worker is not None:
                self._worker.join()
                self._worker = None
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
            if self.fixer is not None or self._worker is not None:
                return False
            fixer = self._build()
            can_load_off_thread = getattr(fixer, "can_load_off_thread", None)
            if not callable(can_load_off_thread) or not can_load_off_thread():
                return False
            if cuda_only and getattr(getattr(fixer, "device", None), "type", None) != "cuda":
                return False
            self._worker = threading.Thread(
                target=self._prepare, args=(fixer, warm_up), name="difix3d-fixer-prepare", daemon=True
            )
            self.prepared_in_background = True
            self._worker.start()
            return True

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

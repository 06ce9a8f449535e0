"""Progress of long steps (fix rounds, fine-tunes, evaluation stages): what, n/N, elapsed, ETA.

``step_progress(description, total)`` shows a rich progress bar in the terminal and publishes a one-line status
(``"Difix3D fix round @2000: rendering 3/6, ETA 0:00:41"``) to every registered listener; the viewer registers one
that shows it in its "Difix status" text field while training runs. When another rich live display is already
active (rich allows one at a time), the step is reported as plain lines instead.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional

from rich.console import Console
from rich.errors import LiveError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_listeners: List[Callable[[str], None]] = []
_lock = threading.Lock()


def add_status_listener(listener: Callable[[str], None]) -> None:
    """Call ``listener(text)`` with every status line (idempotent)."""
    with _lock:
        if listener not in _listeners:
            _listeners.append(listener)


def remove_status_listener(listener: Callable[[str], None]) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def publish_status(text: str) -> None:
    """Send a status line to the listeners (a failing listener never breaks the step it reports on)."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(text)
        except Exception:  # noqa: BLE001  (a closed viewer must not stop training)
            pass


def format_eta(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = int(round(max(0.0, seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class StepReporter:
    """Handed out by :func:`step_progress`: ``advance()`` after each unit of work; ``status`` is the last line."""

    def __init__(self, description: str, total: int, progress: Optional[Progress], console: Console):
        self.description = description
        self.total = max(0, int(total))
        self.done = 0
        self.started = time.perf_counter()
        self._progress = progress
        self._task = progress.add_task(description, total=self.total) if progress is not None else None
        self._console = console
        self._last_line = -1.0
        self.status = ""
        self._publish()

    def eta(self) -> Optional[float]:
        if self.done == 0 or self.total == 0:
            return None
        elapsed = time.perf_counter() - self.started
        return elapsed / self.done * (self.total - self.done)

    def advance(self, n: int = 1, description: Optional[str] = None) -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        if description is not None:
            self.description = description
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, description=self.description)
        else:  # plain lines: at most one every 5 s, and the last one
            now = time.perf_counter()
            if now - self._last_line >= 5.0 or self.done >= self.total:
                self._last_line = now
                self._console.print(f"{self.description}: {self.done}/{self.total}, ETA {format_eta(self.eta())}",
                                    highlight=False)
        self._publish()

    def _publish(self) -> None:
        self.status = f"{self.description}: {self.done}/{self.total}, ETA {format_eta(self.eta())}"
        publish_status(self.status)


@contextmanager
def step_progress(description: str, total: int, console: Optional[Console] = None) -> Iterator[StepReporter]:
    """Report ``total`` units of work (see the module docstring); publishes "... done" at the end."""
    console = console or Console(stderr=True)
    progress: Optional[Progress] = Progress(
        TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
    )
    try:
        progress.start()
    except LiveError:  # another live display (e.g. a status spinner) is active: plain lines instead
        progress = None
    reporter = StepReporter(description, total, progress, console)
    try:
        yield reporter
    finally:
        if progress is not None:
            progress.stop()
        elapsed = time.perf_counter() - reporter.started
        publish_status(f"{reporter.description}: {reporter.done}/{reporter.total} done in {format_eta(elapsed)}")

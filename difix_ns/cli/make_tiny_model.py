"""``difix-make-tiny-model``: write a tiny random-weight Difix (or NVIDIA Fixer) model in the real on-disk layout.

    difix-make-tiny-model OUT_DIR [--no-reference-mixing] [--kind fixer] [--seed 0]

The models come from :mod:`difix_ns.testing` (Difix) and :mod:`difix_ns.fixers.cosmos_testing` (Fixer); their
outputs are noise: they prove plumbing (loading, shapes, CLIs), never quality. Options are a tyro dataclass.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

import tyro

from difix_ns.testing import save_tiny_difix


@dataclass
class MakeTinyModel:
    """Write a tiny random-weight Difix (or Fixer) model for offline tests; outputs are noise."""

    out_dir: tyro.conf.Positional[Path]
    """Directory to write (Difix: model_index.json, scheduler/, ..., vae/; Fixer: base/ and pretrained/)."""
    kind: Literal["difix", "fixer"] = "difix"
    """difix: the Hugging Face layout of nvidia/difix(_ref); fixer: NVIDIA Fixer's layout (nvidia/Fixer)."""
    reference_mixing: bool = True
    """Write the nvidia/difix_ref layout (references mixed in self-attention); --no-reference-mixing: nvidia/difix."""
    seed: int = 0
    """Random seed of the weights."""


def entrypoint(argv: Optional[Sequence[str]] = None) -> None:
    args = tyro.cli(MakeTinyModel, args=argv)
    if args.kind == "fixer":
        from difix_ns.fixers.cosmos_testing import save_tiny_fixer

        print(f"wrote tiny random-weight Fixer model to {save_tiny_fixer(args.out_dir, seed=args.seed)}")
        return
    out = save_tiny_difix(args.out_dir, reference_mixing=args.reference_mixing, seed=args.seed)
    kind = "difix_ref" if args.reference_mixing else "difix"
    print(f"wrote tiny random-weight {kind} model to {out}")


if __name__ == "__main__":
    entrypoint()

"""``difix-enhance-video``: Difix3D+ post-processing of a rendered video (same flags as the reference workflow's
``enhance_existing_video.py``).

    difix-enhance-video --input render.mp4 --output enhanced.mp4 [--use-ref --ref-images data/images]

The output has the input's frame count and frame rate. With ``--use-ref`` each frame is paired with the most
similar training image: the one whose 32x32 area-downsampled, per-channel-normalised pixels are closest (L2) to
the frame's. That needs no camera poses, so it works for any video.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, List, Optional, Sequence

import numpy as np
import torch
import tyro

from difix_ns.cli.common import (
    ModelOptions, cli_main, console, fit_to, load_fixer, most_similar, plumbing_notice, progress,
)
from difix_ns.cli.common import thumbnail
from difix_ns.cli.tyro_style import parse
from difix_ns.io import (
    InputError,
    OutputTransaction,
    VideoWriter,
    iter_video_frames,
    list_images,
    load_image_tensor,
    probe_image,
    refuse_existing,
    video_info,
)


PROG = "difix-enhance-video"
DESCRIPTION = __doc__.split("\n\n")[0].replace("``", "")


@dataclass(kw_only=True)
class EnhanceVideoConfig(ModelOptions):
    """Options of ``difix-enhance-video`` (the reference workflow's dashed flags, plus underscored aliases)."""

    input: str
    """Input video (any format ffmpeg reads, e.g. mp4)."""
    output: str
    """Output video path (.mp4, H.264)."""
    use_ref: Annotated[bool, tyro.conf.arg(aliases=("--use-ref",))] = False
    """Condition every frame on its most similar image from --ref-images."""
    ref_images: Annotated[Optional[str], tyro.conf.arg(aliases=("--ref-images",))] = None
    """Folder of clean reference images (e.g. the training photos)."""
    overwrite: bool = False
    """Replace --output if it already exists (default: refuse)."""


def _frames_to_tensor(frames: List[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255.0)


@cli_main
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse(EnhanceVideoConfig, argv, prog=PROG, description=DESCRIPTION)
    src, dst = Path(args.input), Path(args.output)
    if args.ref_images and not args.use_ref:
        console.print("[yellow]note:[/] --ref-images given, enabling --use-ref")
        args.use_ref = True
    if args.use_ref and not args.ref_images:
        raise InputError("--use-ref needs --ref-images DIR (the clean training images)")
    if dst.suffix.lower() != ".mp4":
        raise InputError(f"--output must be an .mp4 file, got {dst}")
    if dst.exists() and dst.is_dir():
        raise InputError(f"--output is a directory: {dst}")
    if dst.resolve() == src.resolve():
        raise InputError(f"--output must differ from --input ({src})")
    refuse_existing([dst], args.overwrite)
    fps, count, _ = video_info(src)
    refs = list_images(args.ref_images, what="--ref-images folder") if args.use_ref else []
    for r in refs:
        probe_image(r, what="reference image")

    fixer = load_fixer(args)
    if refs and not fixer.uses_references:
        console.print(f"[yellow]warning:[/] model {args.model_name} has no reference mixing; references are ignored")
        refs = []
    ref_images = [load_image_tensor(r, "reference image") for r in refs]
    ref_keys = torch.stack([thumbnail(r) for r in ref_images]) if refs else None

    def run(frames: List[np.ndarray], writer: VideoWriter) -> None:
        x = _frames_to_tensor(frames)
        r = None
        if ref_keys is not None:
            chosen = most_similar(torch.stack([thumbnail(f) for f in x]), ref_keys)
            h, w = x.shape[-2:]
            r = torch.stack([fit_to(ref_images[c], h, w) for c in chosen])[:, None]  # [B,1,3,H,W]
        for out in fixer.fix(x, r):
            writer.append(out.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy())

    with OutputTransaction(dst.parent if str(dst.parent) else ".") as tx, progress() as bar:
        task = bar.add_task("enhancing", total=count)
        with VideoWriter(tx.path(dst.name), fps) as writer:
            pending: List[np.ndarray] = []
            for frame in iter_video_frames(src):
                pending.append(frame)
                if len(pending) == args.batch_size:
                    run(pending, writer)
                    bar.advance(task, len(pending))
                    pending = []
            if pending:
                run(pending, writer)
                bar.advance(task, len(pending))
            written = writer.frames
        if written != count:
            raise InputError(f"decoded {written} frames from {src} but its header promised {count}; not writing {dst}")
    console.print(f"[green]wrote[/] {dst} ({written} frames, {fps:g} fps)", soft_wrap=True)
    plumbing_notice(fixer)


def entrypoint() -> None:
    main()

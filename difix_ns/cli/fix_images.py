"""``difix-fix``: fix one image or a folder of renders with Difix (flags of Difix's ``inference_difix.py``).

    difix-fix --input_image renders/ --ref_image data/images --output_dir fixed --model_name nvidia/difix_ref

Outputs keep the input stems (``renders/0007.png`` -> ``fixed/0007.png``); ``--video`` also writes
``output.mp4`` (30 fps). All inputs are checked before the model loads, and outputs appear only if the whole run
succeeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Dict, List, Literal, Optional, Sequence, Tuple

import torch
import tyro

from difix_ns.cli.common import (
    ModelOptions,
    cli_main,
    console,
    fit_to,
    load_fixer,
    most_similar,
    plumbing_notice,
    progress,
    thumbnail,
)
from difix_ns.cli.tyro_style import parse
from difix_ns.io import (
    InputError,
    OutputTransaction,
    VideoWriter,
    load_image,
    load_image_tensor,
    probe_image,
    refuse_existing,
    resolve_images,
    save_image,
)

VIDEO_NAME = "output.mp4"
VIDEO_FPS = 30


PROG = "difix-fix"
DESCRIPTION = __doc__.split("\n\n")[0].replace("``", "")


@dataclass(kw_only=True)
class FixImagesConfig(ModelOptions):
    """Options of ``difix-fix`` (the flags of Difix's ``inference_difix.py``, plus dashed aliases)."""

    input_image: Annotated[str, tyro.conf.arg(aliases=("--input-image",))]
    """An image file or a folder of images (png/jpg/jpeg/webp, processed in sorted order)."""
    ref_image: Annotated[Optional[str], tyro.conf.arg(aliases=("--ref-image",))] = None
    """Reference view(s): one file used for every input, or a folder paired with the inputs."""
    ref_match: Annotated[Literal["auto", "order", "similar"], tyro.conf.arg(aliases=("--ref-match",))] = "auto"
    """Pairing for a --ref_image folder: 'order' pairs the i-th sorted input with the i-th sorted reference (the \
counts must match, else error); 'similar' picks, per input, the reference with the closest 32x32 downsampled \
pixels (any count); 'auto' uses 'order' when the counts match and 'similar' otherwise (e.g. 30 trajectory \
renders vs 4 training images)."""
    output_dir: Annotated[str, tyro.conf.arg(aliases=("--output-dir",))]
    """Where the fixed images are written."""
    height: int = 0
    """Processing height; 0 keeps the input size."""
    width: int = 0
    """Processing width; 0 keeps the input size."""
    video: bool = False
    """Also write output.mp4 (30 fps) of the outputs."""
    overwrite: bool = False
    """Replace outputs that already exist (default: refuse)."""


def _processing_size(size: Tuple[int, int], height: int, width: int) -> Tuple[int, int]:
    """(H, W) the model sees: the input size, or --height/--width (one of them 0 keeps the aspect ratio)."""
    w, h = size
    if height <= 0 and width <= 0:
        return h, w
    if height <= 0:
        return max(1, round(h * width / w)), width
    if width <= 0:
        return height, max(1, round(w * height / h))
    return height, width


def _pair_references(args: FixImagesConfig, inputs: List[Path]) -> Tuple[Optional[List[Path]], bool]:
    """(references, similar): one reference per input in order, or (similar=True) the candidates to pick from.

    ``--ref_match auto`` keeps upstream's sorted-order pairing when a folder has one reference per input and falls
    back to similarity matching otherwise, so the documented Difix3D+ command (a trajectory of renders against the
    handful of training photos) runs as written.
    """
    if args.ref_image is None:
        return None, False
    refs = resolve_images(args.ref_image, what="--ref_image")
    for r in refs:
        probe_image(r, what="reference image")
    if not Path(args.ref_image).is_dir():
        return refs * len(inputs), False
    if args.ref_match == "order" and len(refs) != len(inputs):
        raise InputError(
            f"--ref_image folder {args.ref_image} has {len(refs)} images but --input_image has {len(inputs)}; "
            "give one reference per input, a single reference file, or --ref_match similar")
    similar = args.ref_match == "similar" or (args.ref_match == "auto" and len(refs) != len(inputs))
    if similar and args.ref_match == "auto":
        console.print(f"[yellow]note:[/] --ref_image folder has {len(refs)} images for {len(inputs)} inputs; "
                      "pairing each input with its most similar reference (--ref_match similar)")
    return refs, similar


@cli_main
def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse(FixImagesConfig, argv, prog=PROG, description=DESCRIPTION)
    if args.height < 0 or args.width < 0:
        raise InputError(f"--height/--width must be >= 0, got {args.height}x{args.width}")
    inputs = resolve_images(args.input_image, what="--input_image")
    sizes = [probe_image(p, what="input image") for p in inputs]  # fail on bad files before loading a model
    names = [p.stem + ".png" for p in inputs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"--input_image has several files with the same stem (would overwrite {dupes[0]})")
    clobbered = [p for p, n in zip(inputs, names) if (Path(args.output_dir) / n).resolve() == p.resolve()]
    if clobbered:
        raise InputError(f"--output_dir {args.output_dir} would overwrite the input {clobbered[0]}; use another folder")
    if args.video and len(set(sizes)) > 1:
        raise InputError(f"--video needs equally sized inputs; {args.input_image} has sizes {sorted(set(sizes))}")
    if args.video and VIDEO_NAME in names:
        raise InputError(f"--video would overwrite the output of an input named {Path(VIDEO_NAME).stem}")
    refuse_existing([Path(args.output_dir) / n for n in names + ([VIDEO_NAME] if args.video else [])],
                    args.overwrite)
    for size in set(sizes):
        ph, pw = _processing_size(size, args.height, args.width)
        if min(ph, pw) < 64:
            raise InputError(f"--height/--width give a {pw}x{ph} processing size for {size[0]}x{size[1]} inputs; "
                             "Difix needs at least 64 px per side")
    refs, similar = _pair_references(args, inputs)

    fixer = load_fixer(args)
    if refs is not None and not fixer.uses_references:
        console.print(f"[yellow]warning:[/] model {args.model_name} has no reference mixing; --ref_image is ignored")
        refs, similar = None, False
    ref_keys = torch.stack([thumbnail(load_image_tensor(r, "reference image")) for r in refs]) if similar else None
    ref_cache: Dict[Path, torch.Tensor] = {}

    def reference(path: Path) -> torch.Tensor:
        if path not in ref_cache:
            ref_cache.clear()  # consecutive inputs usually share a reference; keep memory flat otherwise
            ref_cache[path] = load_image_tensor(path, "reference image")
        return ref_cache[path]

    # Consecutive inputs of equal size form a batch (the fixer then splits it by --batch_size).
    batches: List[List[int]] = []
    for i, size in enumerate(sizes):
        if batches and sizes[batches[-1][0]] == size and len(batches[-1]) < args.batch_size:
            batches[-1].append(i)
        else:
            batches.append([i])

    staged: Dict[int, Path] = {}
    with OutputTransaction(args.output_dir) as tx, progress() as bar:
        task = bar.add_task("fixing", total=len(inputs))
        for batch in batches:
            w, h = sizes[batch[0]]
            ph, pw = _processing_size((w, h), args.height, args.width)
            images = torch.stack([load_image_tensor(inputs[i], "input image") for i in batch])
            x = fit_to(images, ph, pw)
            r = None
            if refs is not None:
                if similar:
                    chosen = most_similar(torch.stack([thumbnail(im) for im in images]), ref_keys)
                    paths = [refs[c] for c in chosen]
                else:
                    paths = [refs[i] for i in batch]
                r = torch.stack([fit_to(reference(p), ph, pw) for p in paths])[:, None]  # [B,1,3,H,W]
            y = fit_to(fixer.fix(x, r), h, w)
            for i, out in zip(batch, y):
                staged[i] = tx.path(names[i])
                save_image(out, staged[i])
            bar.advance(task, len(batch))
        if args.video:
            with VideoWriter(tx.path(VIDEO_NAME), VIDEO_FPS) as writer:
                for i in range(len(inputs)):
                    writer.append(load_image(staged[i], "staged output"))
    console.print(f"[green]wrote[/] {len(inputs)} image(s){' and ' + VIDEO_NAME if args.video else ''} "
                  f"to {args.output_dir}", soft_wrap=True)
    stems = [Path(names[i]).stem for i in range(len(inputs))]
    if stems and all(s.isdigit() and len(s) == len(stems[0]) for s in stems):  # numbered frames: the ffmpeg pattern
        suffix = Path(names[0]).suffix
        console.print(f"video: ffmpeg -r 30 -i {args.output_dir}/%0{len(stems[0])}d{suffix} -c:v libx264 "
                      f"-pix_fmt yuv420p -crf 18 out.mp4   (or pass --video)", highlight=False, soft_wrap=True)
    plumbing_notice(fixer)


def entrypoint() -> None:
    main()


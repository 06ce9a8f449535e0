"""Image / video I/O for the Difix tools: clear errors that name the file, and all-or-nothing outputs.

Every user-facing problem raises :class:`InputError` (a ``ValueError``) whose message names the offending file or
option; the CLIs print it as one line and exit with code 2. Outputs are written through
:class:`OutputTransaction`: files are staged in a hidden folder and moved into place only when the whole run
succeeded, so a failed run leaves nothing behind and never touches files that existed before it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

PathLike = Union[str, os.PathLike]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
MIN_IMAGE_SIZE = 64  # the VAE downsamples by 8 and the UNet by another 8: smaller inputs have no latent to fix


class InputError(ValueError):
    """A user input (file, folder or option) is unusable; the message names it."""


def refuse_existing(paths: Iterable[PathLike], overwrite: bool) -> None:
    """Refuse (``InputError`` naming the path) to replace an existing output unless ``--overwrite`` was given."""
    if overwrite:
        return
    for path in paths:
        if Path(path).exists():
            raise InputError(f"output {path} already exists; pass --overwrite to replace it")


# --- images -------------------------------------------------------------------------------------------------------


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB view of any PIL mode: alpha is dropped, grayscale replicated, 16-bit/float scaled to 8 bit."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def _open(path: Path, what: str) -> Image.Image:
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if path.is_dir():
        raise InputError(f"{what} is a directory, expected an image file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(path)
    except UnidentifiedImageError:
        raise InputError(f"{what} is not an image (unrecognised format): {path}") from None
    except (OSError, Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise InputError(f"{what} could not be read: {path} ({err})") from None


def _check_size(size: Tuple[int, int], path: Path, what: str, min_size: int) -> None:
    w, h = size
    if min(w, h) < min_size:
        raise InputError(f"{what} is {w}x{h} px, smaller than the {min_size} px minimum: {path}")


def probe_image(path: PathLike, what: str = "image", min_size: int = MIN_IMAGE_SIZE) -> Tuple[int, int]:
    """Cheap header check (exists, is an image, big enough) -> ``(width, height)``, without decoding pixels."""
    path = Path(path)
    with _open(path, what) as img:
        size = _oriented_size(img)
        _check_size(size, path, what, min_size)
        return size


# EXIF orientations 5-8 rotate by 90/270 degrees: the displayed image has width and height swapped.
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


def _oriented_size(img: Image.Image) -> Tuple[int, int]:
    """``(width, height)`` as displayed, i.e. after the EXIF orientation is applied."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a malformed EXIF block: PIL's own exif_transpose ignores it too
        orientation = 1
    w, h = img.size
    return (h, w) if orientation in _TRANSPOSED_ORIENTATIONS else (w, h)


def load_image(path: PathLike, what: str = "image", min_size: int = MIN_IMAGE_SIZE) -> Image.Image:
    """Decode an image file to RGB (RGBA/grayscale/palette/16-bit converted), checking it is >= ``min_size``."""
    path = Path(path)
    with _open(path, what) as img:
        _check_size(_oriented_size(img), path, what, min_size)
        try:
            img.load()
            oriented = ImageOps.exif_transpose(img)  # a phone photo is fixed the way it is displayed
        except (OSError, SyntaxError, ValueError) as err:  # truncated / corrupt data: PIL raises all three
            raise InputError(f"{what} is corrupt or truncated: {path} ({err})") from None
        return _to_rgb(oriented).copy()


def to_rgb(image: Image.Image) -> Image.Image:
    """RGBA / grayscale / palette images are converted to RGB with PIL's own conversion (alpha is dropped), as the
    ``DifixPipeline`` call of the original scripts does; files read by :func:`load_image` go through the richer
    ``_to_rgb`` (16-bit and float modes scaled)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> ``[3,H,W]`` float32 in [0, 1] (non-RGB modes through :func:`to_rgb`)."""
    return torch.from_numpy(np.array(to_rgb(img), dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """``[3,H,W]`` float in [0, 1] -> RGB PIL image (clamped, rounded half to even)."""
    arr = t.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def save_png(image: torch.Tensor, path: PathLike, atomic: bool = False) -> None:
    """``[3,H,W]`` or ``[1,3,H,W]`` float in [0, 1] -> 8-bit RGB PNG (clamped, ``floor(255 x + 0.5)``), creating the
    folder. ``atomic``: written to a temporary name and renamed, so a crash never leaves a truncated PNG."""
    array = (image.detach().reshape(-1, *image.shape[-2:]).float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.stem + ".tmp.png") if atomic else path
    Image.fromarray(array.permute(1, 2, 0).cpu().numpy()).save(target)
    if atomic:
        os.replace(target, path)


def load_image_tensor(path: PathLike, what: str = "image", min_size: int = MIN_IMAGE_SIZE) -> torch.Tensor:
    return pil_to_tensor(load_image(path, what, min_size))


def list_images(folder: PathLike, what: str = "image folder") -> List[Path]:
    """Image files (png/jpg/jpeg/webp, any case) directly inside ``folder``, sorted by name; never empty."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{what} not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"{what} is not a directory: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"{what} contains no {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} images: {folder}")
    return files


def resolve_images(path: PathLike, what: str = "input") -> List[Path]:
    """A single image file -> ``[file]``; a folder -> its sorted images."""
    path = Path(path)
    if path.is_dir():
        return list_images(path, what=f"{what} folder")
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    return [path]


def save_image(img: Union[Image.Image, torch.Tensor], path: PathLike) -> None:
    """Save a PIL image, or a ``[3,H,W]`` tensor in [0, 1] through :func:`tensor_to_pil`; the format follows the
    suffix."""
    if isinstance(img, torch.Tensor):
        img = tensor_to_pil(img)
    img.save(path)


# --- video --------------------------------------------------------------------------------------------------------


_FFMPEG_BANNER = ("ffmpeg version", "built with", "configuration:", "lib", "=== stderr ===")


def _ffmpeg_reason(err: BaseException) -> str:
    """The one useful line of an imageio-ffmpeg error (ffmpeg prints ~16 lines of banner and build flags)."""
    import re

    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    detail = [ln for ln in lines[1:] if not ln.startswith(_FFMPEG_BANNER)]
    detail = [re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", ln) for ln in detail]
    for ln in detail:
        if re.search(r"invalid|error|not found|corrupt|unsupported|truncat|no such", ln, re.IGNORECASE):
            return ln
    return detail[-1] if detail else (lines[0] if lines else type(err).__name__)


def _video_reader(path: Path):
    import imageio.v2 as iio

    if not path.exists():
        raise InputError(f"input video not found: {path}")
    if path.is_dir():
        raise InputError(f"input video is a directory: {path}")
    try:
        return iio.get_reader(str(path), format="FFMPEG")
    except Exception as err:  # imageio raises OSError / ValueError / RuntimeError depending on the failure
        raise InputError(f"input video could not be opened (not a video or corrupt): {path} ({_ffmpeg_reason(err)})") \
            from None


def video_info(path: PathLike) -> Tuple[float, int, Tuple[int, int]]:
    """``(fps, frame_count, (width, height))`` of a video file (the count is exact: frames are decoded)."""
    path = Path(path)
    reader = _video_reader(path)
    try:
        meta = reader.get_meta_data()
        fps = float(meta.get("fps") or 0)
        count = reader.count_frames()
        size = tuple(int(v) for v in meta.get("size", (0, 0)))
    except Exception as err:
        raise InputError(f"input video could not be decoded: {path} ({_ffmpeg_reason(err)})") from None
    finally:
        reader.close()
    if fps <= 0 or count <= 0:
        raise InputError(f"input video has no frames or no frame rate: {path}")
    return fps, count, size  # type: ignore[return-value]


def iter_video_frames(path: PathLike, min_size: int = MIN_IMAGE_SIZE) -> Iterator[np.ndarray]:
    """Yield ``HxWx3`` uint8 frames (streamed, so long videos do not have to fit in memory)."""
    path = Path(path)
    reader = _video_reader(path)
    try:
        for i, frame in enumerate(reader):
            if i == 0:
                h, w = frame.shape[:2]
                if min(h, w) < min_size:
                    raise InputError(f"input video is {w}x{h} px, smaller than the {min_size} px minimum: {path}")
            yield np.ascontiguousarray(frame[..., :3])
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"input video could not be decoded: {path} ({_ffmpeg_reason(err)})") from None
    finally:
        reader.close()


def read_video(path: PathLike) -> Tuple[List[np.ndarray], float]:
    """All frames (``HxWx3`` uint8) and the frame rate."""
    fps, _, _ = video_info(path)
    return list(iter_video_frames(path)), fps


class VideoWriter:
    """H.264 mp4 writer (imageio-ffmpeg); frames are ``HxWx3`` uint8 arrays or PIL images."""

    def __init__(self, path: PathLike, fps: float, quality: int = 8) -> None:
        import imageio.v2 as iio

        # macro_block_size=2: yuv420p needs even sizes; imageio's default (16) would rescale most frames.
        self._writer = iio.get_writer(str(path), format="FFMPEG", fps=fps, codec="libx264", quality=quality,
                                      pixelformat="yuv420p", macro_block_size=2)
        self.frames = 0

    def append(self, frame: Union[np.ndarray, Image.Image]) -> None:
        self._writer.append_data(np.asarray(frame, dtype=np.uint8))
        self.frames += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(path: PathLike, frames: Sequence[Union[np.ndarray, Image.Image]], fps: float) -> None:
    with VideoWriter(path, fps) as writer:
        for frame in frames:
            writer.append(frame)


# --- all-or-nothing outputs ---------------------------------------------------------------------------------------


class OutputTransaction:
    """Stage output files and publish them only if the ``with`` block succeeds.

    ``tx.path("name.png")`` returns where to write ``name.png``: a file in a hidden staging folder inside
    ``output_dir``. On success every staged file is moved (``os.replace``, atomic per file) to
    ``output_dir/name``. On any exception (Ctrl-C included) the staging folder is deleted, and so are the output
    folders this run created, if they are still empty; files that existed before are never touched.
    """

    def __init__(self, output_dir: PathLike) -> None:
        self.output_dir = Path(output_dir)
        self._names: List[str] = []
        self._created: List[Path] = []
        self._staging: Optional[Path] = None

    def __enter__(self) -> "OutputTransaction":
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise InputError(f"output path exists and is not a directory: {self.output_dir}")
        missing = []
        p = self.output_dir.absolute()
        while not p.exists():
            missing.append(p)
            p = p.parent
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot create output directory {self.output_dir}: {err}") from None
        self._created = missing  # deepest first
        self._staging = Path(tempfile.mkdtemp(prefix=".difix-partial-", dir=self.output_dir))
        return self

    def path(self, name: str) -> Path:
        if self._staging is None:
            raise RuntimeError("OutputTransaction.path() used outside its `with` block")
        if Path(name).name != name:
            raise ValueError(f"output names must be plain file names, got {name!r}")
        if name in self._names:
            raise InputError(f"two outputs would both be written to {self.output_dir / name}")
        self._names.append(name)
        return self._staging / name

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                for name in self._names:
                    staged = self._staging / name
                    if not staged.exists():
                        raise RuntimeError(f"output {name} was announced but never written")
                for name in self._names:
                    os.replace(self._staging / name, self.output_dir / name)
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)
            if exc_type is not None:
                for folder in self._created:
                    try:
                        folder.rmdir()  # only succeeds when empty, i.e. nothing else was put there
                    except OSError:
                        break

"""``TeacherFixer`` / ``DegradedTeacherFixer``: evaluation fixers that render the asked cameras from another run.

The teacher is a trained nerfstudio run of the same scene (its ``config.yml``), typically trained on all views.
Its render at the camera of a novel view is what a perfect fixer would return, so Difix3D with it is an upper
bound on what the fix loop can carry into the 3D model (the oracle). ``DegradedTeacherFixer`` blurs, colour-shifts,
noises and JPEG-compresses that image: a good but imperfect fixer. These are evaluation tools, not restorers.

Cameras are given in the world frame of the run being fixed; they are moved into the teacher's frame through both
runs' dataparser transforms (see :mod:`difix_ns.fixers.frames`), and their intrinsics are scaled to the image size.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from difix_ns.fixers.config import DegradationConfig
from difix_ns.fixers.frames import WorldFrame, convert_poses

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras


def load_run(config_path: Path) -> Any:
    """A trained run's pipeline (eval mode, latest checkpoint) via nerfstudio's ``eval_setup``; no images loaded."""
    config_path = Path(config_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"teacher run config not found: {config_path} (--pipeline.fixer.teacher-config)")
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config_path, test_mode="inference")
    pipeline.eval()
    return pipeline


def cameras_like(cameras: "Cameras", height: int, width: int) -> "Cameras":
    """``cameras`` with intrinsics scaled so the image is ``height`` x ``width`` (a copy)."""
    from nerfstudio.cameras.cameras import Cameras

    sx = width / cameras.width.float()
    sy = height / cameras.height.float()
    return Cameras(
        camera_to_worlds=cameras.camera_to_worlds,
        fx=cameras.fx * sx,
        fy=cameras.fy * sy,
        cx=cameras.cx * sx,
        cy=cameras.cy * sy,
        width=torch.full_like(cameras.width, width),
        height=torch.full_like(cameras.height, height),
        camera_type=cameras.camera_type,
        distortion_params=cameras.distortion_params,
    )


class TeacherFixer:
    """Returns the teacher run's render of each camera (see the module docstring). An evaluation tool."""

    uses_references = False

    def __init__(self, teacher: Any, student_frame: Optional[WorldFrame] = None):
        """``teacher``: a loaded pipeline or the path of its ``config.yml``; ``student_frame``: the world frame
        of the cameras passed to :meth:`fix` (None: the teacher's own frame)."""
        self.pipeline = load_run(teacher) if isinstance(teacher, (str, Path)) else teacher
        self.model = self.pipeline.model
        self.device = torch.device(getattr(self.model, "device", "cpu"))
        self.teacher_frame = WorldFrame.of_pipeline(self.pipeline)
        self.student_frame = student_frame

    def teacher_cameras(self, cameras: "Cameras") -> "Cameras":
        """``cameras`` with their poses moved into the teacher's world frame."""
        c2w = convert_poses(cameras.camera_to_worlds.reshape(-1, 3, 4).cpu(), self.student_frame, self.teacher_frame)
        moved = cameras.to("cpu")  # a new Cameras object: the caller's cameras stay untouched
        moved.camera_to_worlds = c2w.float()
        return moved

    @torch.no_grad()
    def render(self, cameras: "Cameras", height: int, width: int) -> torch.Tensor:
        """Teacher renders ``[B, 3, height, width]`` in [0, 1] on the teacher's device."""
        cams = self.teacher_cameras(cameras_like(cameras.reshape((-1,)), height, width))
        model_cls = type(self.model)
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            for i in range(len(cams)):
                # The class method, not the instance attribute: a Difix render hook on the teacher must not apply.
                result = model_cls.get_outputs_for_camera(self.model, cams[i : i + 1].to(self.device))
                out.append(result["rgb"][..., :3].float().clamp(0, 1).permute(2, 0, 1))
        finally:
            self.model.train(was_training)
        return torch.stack(out)

    def fix(self, images: torch.Tensor, refs: Optional[torch.Tensor] = None, cameras=None) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B,3,H,W], got shape {tuple(images.shape)}")
        if cameras is None:
            raise ValueError("the teacher fixer needs the cameras the images were rendered from (cameras=None)")
        if cameras.reshape((-1,)).shape[0] != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {cameras.reshape((-1,)).shape[0]} cameras")
        rendered = self.render(cameras, int(images.shape[-2]), int(images.shape[-1]))
        return rendered.to(images.device, torch.float32)

    def __call__(self, images: torch.Tensor, refs: Optional[torch.Tensor] = None, cameras=None) -> torch.Tensor:
        return self.fix(images, refs, cameras)


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image

    out = []
    for img in images:
        array = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
        decoded = np.array(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        out.append(torch.from_numpy(decoded).permute(2, 0, 1).float() / 255.0)
    return torch.stack(out).to(images.device)


def degrade(images: torch.Tensor, config: DegradationConfig, generator: torch.Generator) -> torch.Tensor:
    """Blur, colour shift, noise, JPEG (each skipped when 0) of ``images`` [B, 3, H, W] in [0, 1]."""
    out = images.float()
    if config.blur_sigma > 0:
        out = _gaussian_blur(out, config.blur_sigma)
    if config.color_shift > 0:
        shift = (torch.rand(out.shape[0], 3, 1, 1, generator=generator) * 2 - 1) * config.color_shift
        out = out + shift.to(out.device)
    if config.noise_std > 0:
        noise = torch.randn(out.shape, generator=generator) * config.noise_std
        out = out + noise.to(out.device)
    out = out.clamp(0, 1)
    if config.jpeg_quality > 0:
        out = _jpeg(out, config.jpeg_quality)
    return out


def check_degradation(config: DegradationConfig) -> None:
    for name in ("blur_sigma", "color_shift", "noise_std"):
        if getattr(config, name) < 0:
            option = f"--pipeline.fixer.degrade.{name.replace('_', '-')}"
            raise ValueError(f"{option} must be >= 0, got {getattr(config, name)}")
    if not 0 <= config.jpeg_quality <= 100:
        raise ValueError(f"--pipeline.fixer.degrade.jpeg-quality must be in [0, 100], got {config.jpeg_quality}")


class DegradedTeacherFixer(TeacherFixer):
    """The teacher's image, degraded by :func:`degrade` (seeded). An evaluation tool: a good, imperfect fixer."""

    def __init__(self, teacher: Any, config: Optional[DegradationConfig] = None,
                 student_frame: Optional[WorldFrame] = None):
        self.degradation = config or DegradationConfig()
        check_degradation(self.degradation)
        super().__init__(teacher, student_frame)
        self.generator = torch.Generator().manual_seed(int(self.degradation.seed))

    def fix(self, images: torch.Tensor, refs: Optional[torch.Tensor] = None, cameras=None) -> torch.Tensor:
        clean = super().fix(images, refs, cameras)
        return degrade(clean, self.degradation, self.generator).to(images.device, torch.float32)

"""`ns-nifi-export`: compress a splatfacto run (or a 3DGS PLY) into a Nix container plus a decoded PLY.

    ns-nifi-export --load-config outputs/fox/splatfacto/<run>/config.yml --rate 0.5 --output-dir exports/fox
    ns-nifi-export --input-ply scene.ply --target-mb 0.3 --output-dir exports/scene

Writes `scene.nifi`, `scene_decoded.ply` (INRIA layout of the decoded Gaussians) and `report.json`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import tyro

from nifi_ns.codec import CompressionReport, compress_with_report, decompress, preset_config
from nifi_ns.io import GaussianSplat, read_ply, write_ply


def load_splatfacto_run(config_path: Path) -> tuple[GaussianSplat, object]:
    """Gaussians and training cameras of a splatfacto-family nerfstudio run (via `eval_setup`)."""
    if not config_path.is_file():
        raise FileNotFoundError(f"--load-config: {config_path} does not exist")
    import torch

    if not torch.cuda.is_available():
        try:
            from difix_ns.splat import install_cpu_support
        except ImportError:
            install_cpu_support = None
        if install_cpu_support is not None:
            install_cpu_support()
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(config_path, test_mode="inference")
    model = pipeline.model
    if not hasattr(model, "gauss_params"):
        raise ValueError(
            f"--load-config: {config_path} is a {type(model).__name__} run, not a splatfacto-family model "
            "(no gauss_params)"
        )
    splat = GaussianSplat.from_gauss_params(model.gauss_params)
    cameras = None
    dataset = getattr(getattr(pipeline, "datamanager", None), "train_dataset", None)
    if dataset is not None:
        cameras = dataset.cameras
    return splat, cameras


@dataclass
class ExportNix:
    """Compress Gaussians with the NiFi 'Nix' codec."""

    output_dir: Path
    """Directory for scene.nifi, scene_decoded.ply and report.json."""
    load_config: Optional[Path] = None
    """config.yml of a trained splatfacto-family run."""
    input_ply: Optional[Path] = None
    """A 3DGS PLY instead of a run (INRIA layout or PlayCanvas compressed)."""
    rate: Optional[float] = None
    """Rate preset lambda: 0.1, 0.5 or 1.0 (larger = smaller file: ~1.15 / 0.36 / 0.22 MB)."""
    target_mb: Optional[float] = None
    """Target container size in MB (2^20 bytes); overrides the preset's target."""
    use_train_cameras: bool = True
    """Weight pruning importance by the run's training cameras (ignored for --input-ply)."""
    entropy_coder: Literal["rans", "lzma"] = "rans"
    """Entropy coder (rans = constriction range-ANS; lzma = stdlib baseline)."""

    def main(self) -> CompressionReport:
        if (self.load_config is None) == (self.input_ply is None):
            raise ValueError("give exactly one of --load-config or --input-ply")
        if self.rate is None and self.target_mb is None:
            raise ValueError("give --rate (0.1, 0.5 or 1.0) and/or --target-mb")
        config = preset_config(self.rate if self.rate is not None else 0.5, entropy_coder=self.entropy_coder)
        if self.input_ply is not None:
            splat, cameras = read_ply(self.input_ply), None
        else:
            splat, cameras = load_splatfacto_run(self.load_config)
        blob, report = compress_with_report(
            splat,
            rate=self.rate,
            target_mb=self.target_mb,
            cameras=cameras if self.use_train_cameras else None,
            config=config,
        )
        decoded = decompress(blob)

        self.output_dir.mkdir(parents=True, exist_ok=True)
        container = self.output_dir / "scene.nifi"
        tmp = container.with_name(container.name + ".tmp")
        tmp.write_bytes(blob)
        write_ply(decoded, self.output_dir / "scene_decoded.ply")
        tmp.replace(container)
        info = report.to_dict()
        info["source"] = str(self.load_config or self.input_ply)
        (self.output_dir / "report.json").write_text(json.dumps(info, indent=2))
        print(f"[nifi] wrote {container}: {report.summary()}")
        print(f"[nifi] decoded Gaussians -> {self.output_dir / 'scene_decoded.ply'}")
        return report


def entrypoint() -> None:
    args = tyro.cli(ExportNix)
    try:
        args.main()
    except (ValueError, FileNotFoundError) as err:
        print(f"ns-nifi-export: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    entrypoint()

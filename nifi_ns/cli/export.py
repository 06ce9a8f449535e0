"""`ns-nifi-export`: compress a splatfacto run (or a 3DGS PLY) into a Nix container plus a decoded PLY.

    ns-nifi-export --load-config outputs/fox/splatfacto/<run>/config.yml --rate 0.5 --output-dir exports/fox
    ns-nifi-export --input-ply scene.ply --target-mb 0.3 --output-dir exports/scene
    ns-nifi-export --input-nifi outputs/fox/nifi-splatfacto/<run>/nifi/rate_0.5.nifi --output-dir exports/fox

Writes `scene.nifi`, `scene_decoded.ply` (INRIA layout of the decoded Gaussians) and `report.json`.
`--input-nifi` re-exports an existing container (e.g. the fine-tuned ones `nifi-splatfacto` writes into its run
directory) without re-encoding it.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import tyro

from nifi_ns.codec import CompressionReport, compress_with_report, decompress, preset_config, read_header
from nifi_ns.io import GaussianSplat, inria_ply_num_bytes, read_ply, write_ply


OUTPUT_NAMES = ("scene.nifi", "scene_decoded.ply", "report.json")


def load_splatfacto_run(config_path: Path) -> tuple[GaussianSplat, object]:
    """Gaussians and training cameras of a splatfacto-family nerfstudio run (via `eval_setup`)."""
    from difix_ns.safe_config import load_run_config

    if not config_path.is_file():
        raise FileNotFoundError(f"--load-config: {config_path} does not exist")
    load_run_config(config_path)  # missing, garbage or hostile config.yml: one clear error, nothing runs
    import torch

    if not torch.cuda.is_available():
        from difix_ns.nerfstudio_patches import install_cpu_support_if_available

        install_cpu_support_if_available()
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
    input_nifi: Optional[Path] = None
    """An existing Nix container (e.g. <run>/nifi/rate_0.5.nifi): copied as is and decoded (no re-encoding;
    --rate/--target-mb must not be given)."""
    rate: Optional[float] = None
    """Rate preset lambda: 0.1, 0.5 or 1.0 (larger = smaller file: ~1.15 / 0.36 / 0.22 MB)."""
    target_mb: Optional[float] = None
    """Target container size in MB (2^20 bytes); overrides the preset's target."""
    use_train_cameras: bool = True
    """Weight pruning importance by the run's training cameras (ignored for --input-ply)."""
    entropy_coder: Literal["auto", "rans", "lzma"] = "auto"
    """Entropy coder: rans (constriction range-ANS), lzma (stdlib baseline) or auto (per stream, the shorter)."""
    overwrite: bool = False
    """Replace scene.nifi / scene_decoded.ply / report.json if they already exist in --output-dir (default: refuse)."""

    def outputs(self) -> list[Path]:
        return [self.output_dir / name for name in OUTPUT_NAMES]

    def _check_outputs(self) -> None:
        if self.output_dir.exists() and not self.output_dir.is_dir():
            raise ValueError(f"--output-dir {self.output_dir} exists and is not a directory")
        if not self.overwrite:
            for path in self.outputs():
                if path.exists():
                    raise ValueError(f"output {path} already exists; pass --overwrite to replace it")

    def main(self) -> CompressionReport:
        sources = [s for s in (self.load_config, self.input_ply, self.input_nifi) if s is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of --load-config, --input-ply or --input-nifi")
        if self.target_mb is not None and not (math.isfinite(self.target_mb) and self.target_mb > 0):
            raise ValueError(f"--target-mb must be a finite number > 0, got {self.target_mb}")
        self._check_outputs()
        if self.input_nifi is not None:
            if self.rate is not None or self.target_mb is not None:
                raise ValueError("--input-nifi re-exports a finished container: drop --rate/--target-mb")
            return self._export_container()
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
        return self._write(blob, report, str(self.load_config or self.input_ply))

    def _export_container(self) -> CompressionReport:
        path = self.input_nifi
        if not path.is_file():
            raise FileNotFoundError(f"--input-nifi: {path} does not exist")
        blob = path.read_bytes()
        try:
            decoded, header = decompress(blob), read_header(blob)
        except ValueError as err:
            raise ValueError(f"--input-nifi {path}: {err}") from err
        source, encoder = header.get("source", {}), header.get("encoder", {})
        reference = {
            "ply_bytes": source.get("ply_bytes"),
            "num_input_gaussians": source.get("num_gaussians"),
            "input_sh_degree": source.get("sh_degree"),
        }
        # A nifi-splatfacto container was encoded from the pruned, fine-tuned Gaussians; its run report (same
        # stem, .json) names the trained model, the reference ns-eval's compression_ratio uses.
        run_report = path.with_suffix(".json")
        if run_report.is_file():
            try:
                info = json.loads(run_report.read_text())
            except (OSError, ValueError):
                info = {}
            if isinstance(info, dict) and info.get("sha256") == hashlib.sha256(blob).hexdigest():
                reference.update({k: info[k] for k in reference if isinstance(info.get(k), int)})
        report = CompressionReport(
            size_bytes=len(blob),
            num_gaussians=decoded.num_gaussians,
            num_input_gaussians=int(reference["num_input_gaussians"] or decoded.num_gaussians),
            sh_degree=decoded.sh_degree,
            input_sh_degree=int(reference["input_sh_degree"] or decoded.sh_degree),
            ply_bytes=int(reference["ply_bytes"] or inria_ply_num_bytes(decoded.num_gaussians, decoded.sh_degree)),
            rate=encoder.get("rate"),
            target_mb=encoder.get("target_mb"),
            section_bytes={s["name"]: s["length"] for s in header["sections"]},
            config=dict(encoder.get("config", {})),
        )
        return self._write(blob, report, str(path), decoded)

    def _write(
        self, blob: bytes, report: CompressionReport, source: str, decoded: Optional[GaussianSplat] = None
    ) -> CompressionReport:
        """Decode (before anything is written), then write container, decoded PLY and report atomically."""
        if decoded is None:
            decoded = decompress(blob)
        self._check_outputs()  # again: the encode may have taken a while
        info = report.to_dict()
        info["source"] = source
        container, ply, report_path = self.outputs()
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(f"--output-dir {self.output_dir}: cannot create it ({err.strerror or err})") from None
        # All three files are staged as hidden temporaries and renamed only when all were written.
        staged = [path.with_name(f".{path.name}.tmp") for path in (container, ply, report_path)]
        try:
            staged[0].write_bytes(blob)
            write_ply(decoded, staged[1])
            staged[2].write_text(json.dumps(info, indent=2))
            for tmp, final in zip(staged, (container, ply, report_path)):
                tmp.replace(final)
        except OSError as err:
            raise OSError(f"cannot write the export into {self.output_dir}: {err.strerror or err}; "
                          "nothing was written") from None
        finally:
            for tmp in staged:
                tmp.unlink(missing_ok=True)
        print(f"[nifi] wrote {container}: {report.summary()}")
        print(f"[nifi] decoded Gaussians -> {self.output_dir / 'scene_decoded.ply'}")
        return report


def entrypoint() -> None:
    args = tyro.cli(ExportNix)
    try:
        args.main()
    except (ValueError, OSError) as err:  # NixFormatError is a ValueError; full disk / permissions are OSErrors
        print(f"ns-nifi-export: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    entrypoint()

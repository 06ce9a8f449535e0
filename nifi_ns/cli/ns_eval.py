"""`ns-nifi-eval`: `ns-eval` for nifi-splatfacto runs with the NiFi stages configurable on the command line.

`ns-eval` has no way to change pipeline fields, so a restorer trained after the 3DGS run would need an edit of
config.yml. This is the same evaluation (nerfstudio's `ComputePSNR` output, same JSON), plus overrides:

    ns-nifi-eval --load-config <run>/config.yml --output-path eval.json \
        [--render-output-path DIR] [--restorer-model-path DIR --restorer-lora-path W.ckpt|W.safetensors \
         --restorer-prompt-embeds-path E.npz \
         --restorer-backbone sd3|sdturbo] [--no-restorer] [--eval-stages compressed restored]
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import tyro


@dataclass
class NifiComputeMetrics:
    """Load a nifi-splatfacto checkpoint, compute uncompressed + per-rate compressed/restored metrics, save JSON."""

    load_config: Path
    """Path to the run's config.yml."""
    output_path: Path = Path("output.json")
    """Name of the output JSON file."""
    render_output_path: Optional[Path] = None
    """Optional folder for rendered images (nerfstudio's eval_img_* plus <stage>/rate_<r>/eval_*.png)."""
    restorer_model_path: Optional[str] = None
    """Enable the restored stage with this base model (local diffusers folder or hub id); --restorer-lora-path
    enables it too."""
    restorer_lora_path: Optional[str] = None
    """Restorer LoRA weights: the authors' released .ckpt, this project's safetensors or a training best.pt."""
    restorer_backbone: Optional[Literal["sd3", "sdturbo"]] = None
    """Restorer backbone (default: the run's config)."""
    restorer_prompt_embeds_path: Optional[str] = None
    """Precomputed prompt embedding (official default_embeddings.npz or safetensors); no text encoder is loaded."""
    no_restorer: bool = False
    """Disable the restored stage even if the run's config enables it."""
    eval_stages: Optional[Tuple[str, ...]] = None
    """Override --pipeline.eval-stages."""
    overwrite: bool = False
    """Replace an existing --output-path (default: refuse)."""

    def apply(self, config):
        """Apply the overrides to a loaded TrainerConfig (used as eval_setup's update_config_callback)."""
        from nifi_ns.nerfstudio.nifi_pipeline import NifiPipelineConfig

        if not isinstance(config.pipeline, NifiPipelineConfig):
            raise SystemExit(
                f"error: {self.load_config} is a {config.method_name!r} run; "
                "this command evaluates nifi-splatfacto runs"
            )
        restorer = config.pipeline.restorer
        for name in ("model_path", "lora_path", "backbone", "prompt_embeds_path"):
            value = getattr(self, f"restorer_{name}")
            if value is not None:
                setattr(restorer, name, value)
        if self.restorer_model_path is not None or self.restorer_lora_path is not None:
            restorer.enabled = True
        if self.no_restorer:
            restorer.enabled = False
        if self.eval_stages is not None:
            config.pipeline.eval_stages = tuple(self.eval_stages)
        return config

    def main(self) -> None:
        from nerfstudio.utils.eval_utils import eval_setup
        from nerfstudio.utils.rich_utils import CONSOLE

        if self.output_path.suffix != ".json":
            raise SystemExit(f"error: --output-path {self.output_path} must end in .json")
        if self.output_path.exists() and not self.overwrite:
            raise SystemExit(f"error: output {self.output_path} already exists; pass --overwrite to replace it")
        from difix_ns.safe_config import load_run_config

        load_run_config(self.load_config)  # missing, garbage or hostile config.yml: one clear error, nothing runs
        config, pipeline, checkpoint_path, _ = eval_setup(self.load_config, update_config_callback=self.apply)
        if self.render_output_path is not None:
            self.render_output_path.mkdir(parents=True, exist_ok=True)
        metrics = pipeline.get_average_eval_image_metrics(output_path=self.render_output_path, get_std=True)
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "experiment_name": config.experiment_name,
            "method_name": config.method_name,
            "checkpoint": str(checkpoint_path),
            "results": metrics,
        }
        self.output_path.write_text(json.dumps(info, indent=2), "utf8")
        CONSOLE.print(f"Saved results to: {self.output_path}", soft_wrap=True)


def entrypoint() -> None:
    tyro.cli(NifiComputeMetrics).main()


if __name__ == "__main__":
    entrypoint()

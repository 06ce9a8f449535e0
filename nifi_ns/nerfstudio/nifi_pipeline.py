"""`NifiPipeline`: splatfacto's pipeline plus end-of-training compression and the ns-eval compression stages.

Compression runs once, from a training callback (after the last step, or after ``--pipeline.compress-at-step``):
for every configured rate it prunes a copy of the Gaussians, fine-tunes that copy for a few steps against the
training photos, quantizes and entropy-codes it, and writes ``<run>/nifi/rate_<r>.nifi`` + ``rate_<r>.json``.
The trained Gaussians themselves are never modified, so nerfstudio's own metrics stay the uncompressed ones.

The containers are also kept in the pipeline's checkpoint state (a few MB at most): ``ns-eval`` only gets the
pipeline config and the checkpoint, and a resumed run sees which rates are already done.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Tuple, Type

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE

from difix_ns.nerfstudio.device import announce_device
from difix_ns.nerfstudio.user_errors import check_checkpoint_family
from nifi_ns.nerfstudio.restorer_config import NifiRestorerStageConfig
from nifi_ns.synthesis.layout import rate_label


@dataclass
class NifiPipelineConfig(VanillaPipelineConfig):
    """Splatfacto pipeline with NiFi compression at the end of training and compressed/restored ns-eval metrics."""

    _target: Type = field(default_factory=lambda: NifiPipeline)
    """target class to instantiate"""
    rates: Tuple[float, ...] = (0.1, 0.5, 1.0)
    """Codec rate presets to compress at, one container each (HAC++ lambda convention used by NiFi: a larger
    rate gives a smaller file)."""
    target_mb: Tuple[float, ...] = ()
    """Container sizes in MB (2^20 bytes), one per rate, overriding the presets' targets (which are the paper's
    full Mip-NeRF360 sizes, larger than a small scene needs); empty uses the presets."""
    compress_at_step: Optional[int] = None
    """Training step after which compression runs; None compresses once training has finished (after the final
    checkpoint, which is then re-saved with the containers). Rates still missing at the end (e.g. a step beyond
    the last one) are compressed then."""
    finetune_steps: int = 1000
    """Compression-aware fine-tune: optimisation steps on the pruned Gaussians (per rate) before quantization.
    0 disables it (prune -> quantize)."""
    finetune_distill_weight: float = 0.0
    """Fine-tune target = (1 - w) x training photo + w x the uncompressed model's render of the same view
    (distillation). 0 = photos only, the default: on the CPU fox test 0.5 and 1.0 gave worse LPIPS at 0.1 / 0.5
    rates and no gain at 1.0 (docs/nifi_compression.md)."""
    finetune_quant_start: Optional[float] = 0.5
    """Fraction of the fine-tune after which renders use the rate's quantization grids (straight-through
    gradients); None disables quantisation in the loop."""
    finetune_lr_scale: float = 1.0
    """Multiplier on the per-group learning rates used by the fine-tune (the trainer's current rates when called
    from training, splatfacto's end-of-schedule rates otherwise)."""
    finetune_ssim_lambda: float = 0.2
    """Weight of the (1 - SSIM) term in the fine-tune loss, as in splatfacto (the rest is L1)."""
    finetune_lpips_weight: float = 0.05
    """Weight of an LPIPS term added to the fine-tune loss (0 = off). 0.05 with AlexNet lowered DISTS and LPIPS-vgg
    at every rate for 0.1-0.2 dB of PSNR on the CPU fox test (docs/nifi_compression.md). Without the backbone's
    weights (`difix-fetch-metric-weights`) compression warns and fine-tunes without it."""
    finetune_lpips_net: Literal["alex", "vgg"] = "alex"
    """Backbone of the fine-tune's LPIPS term: alex (small, always staged for metrics) or vgg."""
    prune_stages: int = 1
    """Pruning stages of the fine-tune: 1 cuts to the budget at once; N > 1 starts from `prune-start` x the budget
    and, before each later stage, ranks the fine-tuned survivors again and cuts (geometric steps), so the ranking
    sees what the fine-tune did. The fine-tune steps are split evenly over the stages."""
    prune_start: float = 2.0
    """With prune-stages > 1: the first stage keeps this multiple of the final Gaussian budget."""
    importance_views: int = 32
    """Number of training views over which the pruning importance (opacity x projected footprint) is accumulated."""
    save_finetuned: bool = False
    """Also write ``<label>.finetuned.ply`` (INRIA PLY of the fine-tuned Gaussians before quantization) next to
    each container, e.g. to compare other codecs on the same Gaussians (scripts/bench_nifi_splatfacto.py)."""
    output_subdir: str = "nifi"
    """Folder inside the run directory that receives the containers and their JSON reports."""
    eval_stages: Tuple[str, ...] = ("compressed", "restored")
    """ns-eval stages run per rate, in order (see nifi_ns.nerfstudio.eval_stages.EVAL_STAGES). 'restored' only
    runs when a restorer is configured."""
    eval_during_training: bool = False
    """Also run the per-rate stages in training's periodic full evaluation (slow; off = only ns-eval runs them)."""
    restorer: NifiRestorerStageConfig = field(default_factory=NifiRestorerStageConfig)
    """Optional restorer applied to compressed renders in ns-eval (off by default)."""


def _same_settings(stored: Optional[Mapping[str, Any]], settings) -> bool:
    """Whether a container made with the `stored` settings (a report's dict) is what `settings` would make now.
    A field added after it was written counts as the value that reproduces the writing version's behaviour
    (`SETTINGS_BEFORE_THEY_EXISTED`), which need not be today's default."""
    from nifi_ns.nerfstudio.compression import SETTINGS_BEFORE_THEY_EXISTED

    if stored is None:
        return False
    return {**SETTINGS_BEFORE_THEY_EXISTED, **dict(stored)} == asdict(settings)


class NifiPipeline(VanillaPipeline):
    """VanillaPipeline + compression callback + per-rate eval stages. See module docstring."""

    config: NifiPipelineConfig

    def __init__(self, config: NifiPipelineConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        if kwargs.get("test_mode", args[1] if len(args) > 1 else "val") == "val":  # training
            announce_device("nifi-splatfacto", kwargs.get("device", args[0] if args else "cpu"))
        # label -> {"rate": float, "container": bytes, "report": dict}; persisted via get_extra_state.
        self.compressed: Dict[str, Dict[str, Any]] = {}
        self.run_dir: Optional[Path] = None
        self._restorer = None  # built lazily by the restored stage; never part of the module tree

    def load_pipeline(self, loaded_state: Dict[str, Any], step: int) -> None:
        check_checkpoint_family(loaded_state, self.model, "nifi-splatfacto")
        super().load_pipeline(loaded_state, step)

    # checkpoint state ---------------------------------------------------------------------------------------

    def get_extra_state(self) -> Dict[str, Any]:
        return {"nifi_compressed": dict(self.compressed)}

    def set_extra_state(self, state: Any) -> None:
        if isinstance(state, Mapping) and isinstance(state.get("nifi_compressed"), Mapping):
            self.compressed = {str(k): dict(v) for k, v in state["nifi_compressed"].items()}

    # training -----------------------------------------------------------------------------------------------

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        callbacks = super().get_training_callbacks(training_callback_attributes)
        trainer = training_callback_attributes.trainer
        if trainer is not None:
            self.run_dir = Path(trainer.base_dir)

        def compress(step: int, final: bool) -> None:
            done = self.compress_all(step=step, optimizers=training_callback_attributes.optimizers)
            if done and final and trainer is not None:
                trainer.save_checkpoint(step)  # the final checkpoint was written before AFTER_TRAIN callbacks

        # Appended after the model's callbacks: at AFTER_TRAIN_ITERATION the strategy has already consumed
        # `model.info`, so our renders cannot corrupt densification.
        if self.config.compress_at_step is not None:
            callbacks.append(
                TrainingCallback(
                    [TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                    compress,
                    iters=(self.config.compress_at_step,),
                    kwargs={"final": False},
                )
            )
        # Always also at the end: compresses whatever is still missing (e.g. compress_at_step beyond the last
        # step); a no-op when every rate is done, so resumed runs do not redo work.
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], compress, kwargs={"final": True}))
        return callbacks

    def artifact_dir(self) -> Optional[Path]:
        return None if self.run_dir is None else self.run_dir / self.config.output_subdir

    def compress_all(self, step: Optional[int] = None, optimizers: Any = None) -> List[str]:
        """Compress at every configured rate not done yet; returns the labels compressed now (resumable)."""
        from nifi_ns.nerfstudio.compression import CompressionSettings, compress_model, write_artifacts

        done_now: List[str] = []
        out_dir = self.artifact_dir()
        for rate in self.config.rates:
            label = rate_label(rate)
            settings = CompressionSettings.from_pipeline_config(self.config, rate)
            stored = self.compressed.get(label)
            # Done work is kept unless the compression settings changed since (then the container is stale).
            if stored is None or not _same_settings(stored["report"].get("settings"), settings):
                steps = self.config.finetune_steps
                CONSOLE.print(f"[bold]NiFi[/bold]: compressing at {label} (fine-tune {steps} steps)")
                keep: Dict[str, Any] = {}
                container, report = compress_model(self.model, self.datamanager, rate, settings, optimizers, keep)
                if self.config.save_finetuned and out_dir is not None:
                    from nifi_ns.io import write_ply

                    out_dir.mkdir(parents=True, exist_ok=True)
                    write_ply(keep["finetuned"], out_dir / f"{label}.finetuned.ply")
                report["step"] = step
                report.setdefault("settings", asdict(settings))  # compress_model records the settings as run
                self.compressed[label] = {"rate": float(rate), "container": container, "report": report}
                done_now.append(label)
            if out_dir is not None:
                entry = self.compressed[label]
                write_artifacts(out_dir, label, entry["container"], entry["report"])
        if out_dir is not None and self.compressed:
            summary = {k: v["report"] for k, v in self.compressed.items()}
            (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), "utf8")
        return done_now

    # evaluation ---------------------------------------------------------------------------------------------

    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ) -> Dict[str, Any]:
        metrics = super().get_average_eval_image_metrics(step=step, output_path=output_path, get_std=get_std)
        # Training's periodic full eval passes its step; ns-eval passes None. Only ns-eval pays for the stages.
        if step is not None and not self.config.eval_during_training:
            return metrics
        from nifi_ns.nerfstudio.eval_stages import run_eval_stages

        if not all(rate_label(r) in self.compressed for r in self.config.rates):  # e.g. a pre-compression ckpt
            CONSOLE.print("[yellow]NiFi: the checkpoint holds no containers for some rates; compressing now")
            self.compress_all(step=step)
        # A string-valued `missing_metrics` only in ns-eval's JSON; training's writers take scalars only.
        metrics.update(run_eval_stages(self, output_path=output_path, get_std=get_std, name_missing=step is None))
        return metrics

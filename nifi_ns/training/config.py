"""Training configuration: nested dataclasses mirrored by ``configs/default.yaml`` (import-light), its YAML loading
with errors naming file and key, and the mapping of its ``model`` / ``diffusion`` keys onto the restorer's own
settings (``NiFiTrainingConfig.restorer_settings``; the restorer's fields are declared in
``nifi_ns.restoration.settings``, the YAML keeps the spelling of the training config file format)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional


@dataclass
class ModelConfig:
    backbone: str = "sd3"
    """'sd3' (paper) or 'sdturbo'."""
    model_path: Optional[str] = None
    """Base model folder / hub id; None -> the backbone's default hub id."""
    lora_rank: int = 64
    """Rank of φ⁻ (transformer + VAE encoder)."""
    lora_alpha: float = 64.0
    """LoRA alpha of φ⁻ and φ⁺."""
    critic_lora_rank: int = 64
    """Rank of φ⁺."""
    guidance_scale: float = 7.5
    """CFG scale of teacher and critic inside the distribution-matching gradient."""
    prompt_dropout: float = 0.1
    """Probability of replacing a caption by the null prompt."""
    default_prompt: Optional[str] = None
    """Generator prompt (None: the TSD-SR default prompt)."""
    prompt_embeds_path: Optional[str] = None
    """Precomputed embedding of the generator prompt."""
    dtype: str = "bfloat16"
    """Frozen-weight dtype on CUDA (CPU always float32)."""
    gradient_checkpointing: bool = False
    """Enable activation checkpointing in the denoiser."""


@dataclass
class DiffusionConfig:
    t0: int = 199
    """Intermediate timestep of the one-step restorer."""
    final_sigma: Optional[str] = None
    """'table_min' | 'zero' | None (backbone default)."""
    t_min_index: int = 50
    """Lowest training-table index sampled for distribution matching / critic."""
    t_max_index: int = 950
    """Exclusive upper training-table index."""


@dataclass
class TrainConfig:
    batch_size: int = 4
    """Pairs per step and process."""
    max_steps: int = 60000
    """Generator (φ⁻) steps; each is followed by one critic (φ⁺) step."""
    lr_phi_minus: float = 5e-6
    """AdamW learning rate of φ⁻."""
    lr_phi_plus: float = 1e-6
    """AdamW learning rate of φ⁺."""
    weight_decay: float = 1e-4
    """AdamW weight decay (both optimisers)."""
    grad_clip: float = 1.0
    """Gradient-norm clip (both optimisers)."""
    adam_beta1: float = 0.9
    """AdamW beta1."""
    adam_beta2: float = 0.999
    """AdamW beta2."""
    crop_size: int = 512
    """Random aligned crop size of the training pairs."""
    num_workers: int = 4
    """DataLoader workers."""
    seed: int = 0
    """Seed of adapter init, crops and noise."""
    log_every: int = 10
    """Rows of train_log.csv are written every this many steps."""
    save_every: int = 1000
    """Period of the latest/ checkpoint."""
    eval_every: int = 1000
    """Period of the held-out check that selects best/."""
    eval_max_images: int = 16
    """Held-out pairs used by the periodic check."""
    eval_crop: Optional[int] = 512
    """Centre crop of held-out pairs (None: full images)."""


@dataclass
class LossWeights:
    alpha: float = 0.7
    """Mix of the KL direction and the ground-truth direction in g."""
    kl: float = 1.0
    """Weight of the distribution-matching surrogate."""
    l2: float = 1.0
    """Weight of the image-space MSE."""
    lpips: float = 1.0
    """Weight of LPIPS."""
    lpips_net: str = "vgg"
    """'vgg' or 'alex'."""
    critic: float = 1.0
    """Weight of the critic's flow-matching loss."""


@dataclass
class DataConfig:
    train_split: str = "train"
    """Split folder used for training."""
    val_split: str = "test"
    """Split folder used for the held-out check (falls back to train pairs when absent)."""
    rates: Optional[List[str]] = None
    """Rate labels to keep (None: all)."""
    scenes: Optional[List[str]] = None
    """Scene names to keep (None: all)."""


@dataclass
class NiFiTrainingConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def restorer_settings(self, **runtime):
        """The ``NiFiRestorerConfig`` this run trains: ``model.backbone / model_path / prompt_embeds_path / dtype``,
        ``model.default_prompt`` as the restorer's ``prompt`` (None: the default prompt) and ``diffusion.t0 /
        final_sigma``; ``runtime`` adds device, seed, batch size."""
        from nifi_ns.restoration.config import NiFiRestorerConfig
        from nifi_ns.restoration.embeds import DEFAULT_PROMPT

        m, d = self.model, self.diffusion
        return NiFiRestorerConfig(backbone=m.backbone, model_path=m.model_path,
                                  prompt=m.default_prompt or DEFAULT_PROMPT,
                                  prompt_embeds_path=m.prompt_embeds_path, t0=d.t0, final_sigma=d.final_sigma,
                                  dtype=m.dtype, **runtime)


class ConfigError(ValueError):
    """A configuration file or override is malformed (names the file and key)."""


def _fill(cls, values: dict, where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{name}: expected a mapping, got {type(value).__name__}")
            kwargs[name] = _fill(type(default), value, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, default, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, where: str):
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:  # YAML reads "5e-6" (no dot) as a string
            return type(default)(float(value)) if isinstance(default, float) else int(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from err
    return value


def load_config(path: str | Path | None = None) -> NiFiTrainingConfig:
    """Read a YAML config (missing keys keep their defaults; unknown keys are an error naming file and key)."""
    if path is None:
        return NiFiTrainingConfig()
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file '{path}' is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping at top level")
    return _fill(NiFiTrainingConfig, raw, str(path))


def default_config_path() -> Path:
    """``configs/default.yaml`` of the source checkout."""
    return Path(__file__).resolve().parents[2] / "configs" / "default.yaml"

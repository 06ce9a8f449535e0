"""``NiFiRestorer``: batched tensor API of the one-step restorer (inference) and the generator step used in training.

Pipeline, as the official NiFi ``restorer.py`` (reference nifi.md §1.3): image in [0,1] -> [-1,1] -> reflect-pad
pixels to the VAE's multiple (8) -> x̃ = ℰ_φ⁻(Ĩ)·scaling_factor (posterior mean, no shift_factor) -> reflect-pad the
latent to the patch size (2) -> x̃_t0 = σ0·ε + (1-σ0)·x̃ -> x̂ = x̃_t0 - (σ0 - σ_end)·v_{θ,φ⁻}(x̃_t0, t0; c_default)
with the transformer conditioned on t0 = 199 itself and σ0 / σ_end the training-table entries nearest to 199 / 0 ->
Î = 𝒟(x̂ / scaling_factor) -> crop -> [0,1]. One network call, no CFG. The latent arithmetic runs in the model dtype
(bf16 on CUDA), as there. Added here: a batch dimension, and seeded t0 noise (``seed``) or caller-given ``noise``.
"""
from __future__ import annotations

import dataclasses
from contextlib import ExitStack

import torch
import torch.nn.functional as F

from difix_ns.diffusion.device import resolve_device, resolve_dtype
from nifi_ns.restoration import lora as L
from nifi_ns.restoration.backbones import RestorerBackbone, load_backbone
from nifi_ns.restoration.checkpoint import is_training_checkpoint, read_checkpoint
from nifi_ns.restoration.embeds import PromptEmbeds
from nifi_ns.restoration.files import load_prompt_embeds, read_torch_source
from nifi_ns.restoration.flow import add_noise, euler_step, seeded_noise
from nifi_ns.restoration.formats import file_kind
from nifi_ns.restoration.settings import NiFiRestorerSettings



def reflect_pad(images: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad [B,C,H,W] on the bottom/right to a multiple of ``multiple``; returns the original (H, W)."""
    h, w = images.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"  # reflect needs pad < size
        images = F.pad(images, (0, pw, 0, ph), mode=mode)
    return images, (h, w)


class NiFiRestorer:
    """Restore renders of extremely compressed 3DGS. ``restore(images)`` takes/returns [B,3,H,W] in [0,1].

    Satisfies the fixer contract ``difix_ns.fixers.ImageFixer`` (``fix``, ``uses_references``), so the 3D methods,
    render tools and benchmarks can take a NiFi restorer wherever they take a Difix fixer; ``restore`` is the same
    call with NiFi's own options (``seed``, ``noise``).
    """

    uses_references: bool = False
    """NiFi restores each frame on its own: reference views are never read."""

    def __init__(self, config: NiFiRestorerSettings | None = None, backbone: RestorerBackbone | None = None,
                 **overrides):
        config = dataclasses.replace(config or NiFiRestorerSettings(), **overrides)
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        lora_meta: dict = {}
        if backbone is None:
            backbone = load_backbone(config.backbone, config.resolved_model_path(), device=self.device,
                                     dtype=self.dtype, **config.extra)
            if config.lora_path:
                lora_meta = backbone.load_lora(config.lora_path)
                if int(lora_meta.get("t0", config.t0)) != config.t0:
                    raise ValueError(f"LoRA '{config.lora_path}' was trained for t0={lora_meta['t0']}, config asks "
                                     f"t0={config.t0}")
                # inference runs the adapters in the model dtype, as the official code (it casts the whole model)
                for p in backbone.generator_parameters():
                    p.data = p.data.to(self.dtype)
        self.backbone = backbone
        embeds_path = config.prompt_embeds_path
        if embeds_path is None and config.lora_path and is_training_checkpoint(config.lora_path):
            # a training checkpoint carries its generator prompt's embedding: no text encoder for that prompt
            if read_checkpoint(config.lora_path)["restorer"].get("prompt") == config.prompt:
                embeds_path = config.lora_path
        if embeds_path:
            backbone.set_prompt_embedding(config.prompt, load_prompt_embeds(embeds_path, backbone.kind))
        # official: σ0 is the training-table entry nearest to t0 (SD3: index 924, timestep 197.92, σ 0.1979) while the
        # network is conditioned on t0 itself (199), not on that entry's timestep
        self.sigma_t0, self.table_timestep_t0 = backbone.table.sigma_at_timestep(config.t0)
        self.timestep_t0 = float(config.t0)
        # the Euler step ends where training ended it (recorded in the LoRA file) unless the config says otherwise
        final = config.final_sigma or lora_meta.get("final_sigma") or backbone.default_final_sigma
        self.sigma_end = backbone.table.sigma_min if final == "table_min" else 0.0

    # ----- building blocks (also used by training) -------------------------------------------------------------
    def prompt_embeds(self, batch: int) -> PromptEmbeds:
        return self.backbone.encode_prompts([self.config.prompt]).expand(batch)

    def generate(self, degraded_m11: torch.Tensor, noise: torch.Tensor, embeds: PromptEmbeds | None = None,
                 dtype: torch.dtype = torch.float32):
        """Differentiable generator: degraded [B,3,H,W] in [-1,1] (pixel-padded) -> (x̂, x̃). φ⁻ is used if present.

        The latent is reflect-padded to the backbone's latent multiple here (``noise`` has the padded shape, see
        :meth:`latent_shape`); latent arithmetic runs in ``dtype`` (training: float32; inference: the model dtype)."""
        bb = self.backbone
        name = L.PHI_MINUS if bb.has_adapter(L.PHI_MINUS) else None
        with ExitStack() as stack:
            stack.enter_context(L.active_adapter(bb.denoiser, name))
            stack.enter_context(L.active_adapter(bb.vae, name))
            x_tilde, _ = reflect_pad(bb.encode(degraded_m11, dtype), bb.latent_pad_multiple)
            if tuple(noise.shape) != tuple(x_tilde.shape):
                raise ValueError(f"noise of shape {tuple(noise.shape)} does not match the latent "
                                 f"{tuple(x_tilde.shape)}")
            x_t0 = add_noise(x_tilde, noise.to(x_tilde), self.sigma_t0)
            t = torch.full((x_t0.shape[0],), self.timestep_t0, device=x_t0.device)
            v = bb.velocity(x_t0, t, embeds if embeds is not None else self.prompt_embeds(x_t0.shape[0]))
            x_hat = euler_step(x_t0, v.to(x_t0.dtype), self.sigma_t0, self.sigma_end)
        return x_hat, x_tilde

    def latent_shape(self, batch: int, height: int, width: int) -> tuple[int, ...]:
        """Shape of the (padded) latent, hence of the t0 noise, for pixel-padded images of ``height`` x ``width``."""
        scale = 2 ** (len(self.backbone.vae.config.block_out_channels) - 1)
        m = self.backbone.latent_pad_multiple
        return (batch, self.backbone.latent_channels, -(-(height // scale) // m) * m, -(-(width // scale) // m) * m)

    def noise_shape(self, images: torch.Tensor) -> tuple[int, ...]:
        """Shape of the t0 noise :meth:`restore` draws (or takes as ``noise``) for ``images`` [B,3,H,W]."""
        p = self.backbone.pixel_pad_multiple
        h, w = images.shape[-2:]
        return self.latent_shape(images.shape[0], h + (-h) % p, w + (-w) % p)

    # ----- inference -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def restore(self, images: torch.Tensor, seed: int | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """[B,3,H,W] float in [0,1] (any device) -> restored [B,3,H,W] float32 in [0,1] on the input's device.

        ``seed`` (default: config.seed) makes the t0 noise, hence the output, deterministic; chunk k of a batch
        uses ``seed + k`` so results do not depend on where the batch is split only when batch_size is fixed.
        ``noise`` (shape :meth:`noise_shape`) replaces the drawn noise, e.g. to feed the noise of another run.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"restore() expects [B,3,H,W] images, got {tuple(images.shape)}")
        if images.shape[-1] < 16 or images.shape[-2] < 16:
            raise ValueError(f"restore() needs images of at least 16x16 pixels, got {tuple(images.shape[-2:])}")
        if noise is not None and tuple(noise.shape) != self.noise_shape(images):
            raise ValueError(f"restore(noise=...) must have shape {self.noise_shape(images)} for images of shape "
                             f"{tuple(images.shape)}, got {tuple(noise.shape)}")
        seed = self.config.seed if seed is None else seed
        bb = self.backbone
        dtype = bb.dtype_  # the official code runs the latent arithmetic and the final affine in the model dtype
        out = []
        for k, chunk in enumerate(images.split(self.config.batch_size)):
            # contiguous NCHW like the official ToTensor input: CPU bf16 kernels round differently per memory layout
            x = chunk.to(self.device, torch.float32).contiguous().clamp(0, 1) * 2 - 1
            x, (h, w) = reflect_pad(x, bb.pixel_pad_multiple)
            shape = self.latent_shape(x.shape[0], x.shape[-2], x.shape[-1])
            if noise is None:
                eps = seeded_noise(shape, None if seed is None else seed + k, self.device, torch.float32)
            else:
                start = k * self.config.batch_size
                eps = noise[start:start + x.shape[0]].to(self.device, torch.float32)
            x_hat, _ = self.generate(x, eps, dtype=dtype)
            img = bb.decode(x_hat, dtype)[..., :h, :w]
            out.append(((img + 1) / 2).clamp(0, 1).float().to(images.device))
        return torch.cat(out)

    def fix(self, images: torch.Tensor, refs: torch.Tensor | None = None, cameras=None) -> torch.Tensor:
        """The fixer contract (``difix_ns.fixers.ImageFixer``): ``restore(images)`` with the config's seed; ``refs``
        and ``cameras`` are accepted and ignored (``uses_references`` is False)."""
        return self.restore(images)

    __call__ = restore


def _inside(folder, name, meta_path):
    """``folder / name`` for a run-relative file named in ``meta_path``; refuses absolute paths and ``..``."""
    from pathlib import Path

    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(f"{meta_path}: {name!r} must be a file name relative to its checkpoint folder")
    target = (folder / name).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise ValueError(f"{meta_path}: {name!r} points outside its checkpoint folder {folder}")
    return folder / name


def load_restorer(ckpt: str, **overrides) -> NiFiRestorer:
    """Build a restorer from a training checkpoint (``runs/<exp>/best.pt``, or the ``runs/<exp>/best`` folder), from
    the authors' released ``.ckpt``, or from a bare ``phi_minus`` LoRA file (files are recognised by content).

    Training checkpoints carry the backbone, base model, t0, prompt and the generator prompt embedding, so no text
    encoder is needed. The official ``.ckpt`` is SD3 (t0 = 199); pass ``model_path`` and ``prompt_embeds_path`` (the
    official ``default_embeddings.npz``) as overrides. For a bare ``.safetensors`` pass ``backbone`` / ``model_path``.
    """
    import json
    from pathlib import Path

    path = Path(ckpt)
    meta = None
    if path.is_dir():
        meta_path = path / "nifi_restorer.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"checkpoint folder '{path}' has no nifi_restorer.json "
                                    "(not a NiFi training checkpoint)")
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as err:
            raise ValueError(f"{meta_path} is not valid JSON ({err})") from None
        if not isinstance(meta, dict) or "lora_path" not in meta:
            raise ValueError(f"{meta_path} has no lora_path")
        values = {"lora_path": str(_inside(path, meta["lora_path"], meta_path))}
        if meta.get("prompt_embeds_path"):
            values["prompt_embeds_path"] = str(_inside(path, meta["prompt_embeds_path"], meta_path))
    elif path.is_file() and file_kind(path, "checkpoint") == "torch":
        what, payload = read_torch_source(path)  # names the file when it is neither kind
        values = {"lora_path": str(path)}  # training checkpoint: LoRA and prompt embedding are both read from it
        if what == "training":
            meta = payload["restorer"]
        else:
            values.update({"backbone": "sd3", "t0": 199, "final_sigma": "table_min"})  # what official inference runs
    elif path.is_file():
        values = {"lora_path": str(path)}
    else:
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    if meta is not None:
        values.update({"backbone": meta["backbone"], "model_path": meta["model_path"], "prompt": meta["prompt"],
                       "t0": int(meta["t0"]), "final_sigma": meta.get("final_sigma")})
    values.update({k: v for k, v in overrides.items() if v is not None})
    return NiFiRestorer(NiFiRestorerSettings(**values))

"""``DifixPipeline``: single-step Difix image restoration with the upstream seed API, on current diffusers.

    pipe = DifixPipeline.from_pretrained("nvidia/difix_ref", trust_remote_code=True).to("cuda")
    out = pipe(prompt="remove degradation", image=img, ref_image=ref,
               num_inference_steps=1, timesteps=[199], guidance_scale=0.0).images[0]

Forward (difix3d.md §1.2): VAE-encode the degraded view (and its references) without noise, take the latent
mode (deterministic), one UNet epsilon prediction at t=199 with the cached "remove degradation" embedding, one
DDPM step to x0 = (z - sqrt(1 - abar) eps) / sqrt(abar), decode view 0 with *its own* encoder skips.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput
from PIL import Image

from difix_ns.diffusion import images as imgproc
from difix_ns.diffusion.hub import resolve_model_dir
from difix_ns.diffusion.prompt import PromptEmbeddingCache, clip_prompt_encoder
from difix_ns.models import loading
from difix_ns.models.reference_attention import has_reference_attention, install_reference_attention, reference_views

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = "remove degradation"
DEFAULT_TIMESTEP = 199


class NonFiniteOutputError(RuntimeError):
    """The model produced NaN/Inf values (corrupt weights or a float16 overflow), instead of a silently black image."""
_COMPONENTS = ("scheduler", "text_encoder", "tokenizer", "unet", "vae")
_IGNORED_LOAD_KWARGS = ("trust_remote_code", "custom_pipeline", "use_safetensors", "low_cpu_mem_usage", "variant")

ImageInput = Union[Image.Image, torch.Tensor, Sequence[Image.Image]]


def _as_dtype(value: Union[torch.dtype, str, None], option: str) -> Optional[torch.dtype]:
    """A torch dtype, or None, from a dtype or its name; a name that is not one raises, naming ``option``."""
    if not isinstance(value, str):
        return value
    if not isinstance(getattr(torch, value, None), torch.dtype):
        raise ValueError(f"{option} {value!r} is not a torch dtype name (e.g. 'bfloat16')")
    return getattr(torch, value)


class DifixPipeline(DiffusionPipeline):
    """Difix / Difix-ref restorer. ``reference_mixing`` is True for ``nvidia/difix_ref``-style checkpoints."""

    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, reference_mixing: bool = False):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
        self.register_to_config(reference_mixing=bool(reference_mixing))
        if reference_mixing:
            install_reference_attention(unet)
        self._prompt_cache = PromptEmbeddingCache(clip_prompt_encoder(tokenizer, text_encoder))
        self._warned_refs_ignored = False

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, Path],
        torch_dtype: Union[torch.dtype, str, None] = None,
        *,
        dtype: Union[torch.dtype, str, None] = None,
        revision: Optional[str] = None,
        cache_dir: Optional[str] = None,
        local_files_only: Optional[bool] = None,
        token: Optional[Union[str, bool]] = None,
        **kwargs: Any,
    ) -> "DifixPipeline":
        """Load a hub id or local directory in the HF layout; ``trust_remote_code`` is accepted and ignored.

        Every module is built locally from its config.json and strictly loaded from safetensors. The weights' dtype
        is ``dtype`` (diffusers >= 0.40 spells it so) or ``torch_dtype`` (the older spelling); a torch dtype or its
        name ("bfloat16").
        """
        weights_dtype, asked = _as_dtype(torch_dtype, "torch_dtype"), _as_dtype(dtype, "dtype")
        if asked is not None:
            if weights_dtype is not None and weights_dtype != asked:
                raise ValueError(f"dtype={dtype} and torch_dtype={torch_dtype} disagree; pass one of them")
            weights_dtype = asked
        unknown = sorted(set(kwargs) - set(_IGNORED_LOAD_KWARGS))
        if unknown:
            raise TypeError(f"DifixPipeline.from_pretrained got unexpected keyword argument(s): {', '.join(unknown)}")
        root = resolve_model_dir(
            pretrained_model_name_or_path,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            what="Difix model",
        )
        index = loading.read_json(root / "model_index.json")
        missing = [c for c in _COMPONENTS if c not in index]
        if missing:
            raise loading.ModelResolutionError(
                f"'{root / 'model_index.json'}' lacks component(s) {', '.join(missing)}; not a Difix pipeline"
            )
        scheduler = loading.load_scheduler(root / "scheduler")
        tokenizer = loading.load_tokenizer(root / "tokenizer")
        text_encoder = loading.load_text_encoder(root / "text_encoder", dtype=weights_dtype)
        unet = loading.load_unet(root / "unet", dtype=weights_dtype)
        vae = loading.load_vae(root / "vae", dtype=weights_dtype)
        pipe = cls(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            reference_mixing=loading.model_index_uses_references(index),
        )
        pipe.register_to_config(_name_or_path=str(pretrained_model_name_or_path))
        return pipe

    def save_pretrained(self, save_directory: Union[str, Path], **kwargs: Any) -> None:
        """Write the layout of the real checkpoints (model_index.json + scheduler/text_encoder/tokenizer/unet/vae)."""
        unsupported = sorted(k for k, v in kwargs.items() if k != "safe_serialization" and v not in (None, False))
        if unsupported or kwargs.get("safe_serialization", True) is not True:
            raise TypeError(f"DifixPipeline.save_pretrained writes safetensors only; unsupported: {unsupported}")
        root = Path(save_directory)
        root.mkdir(parents=True, exist_ok=True)
        loading.save_scheduler(self.scheduler, root / "scheduler")
        loading.save_text_encoder(self.text_encoder, root / "text_encoder")
        loading.save_tokenizer(self.tokenizer, root / "tokenizer")
        loading.save_diffusers_model(self.unet, root / "unet", "UNet2DConditionModel")
        loading.save_diffusers_model(self.vae, root / "vae", "AutoencoderKL")
        unet_library = loading.REFERENCE_UNET_LIBRARIES[0] if self.reference_mixing else "diffusers"
        index = {
            "_class_name": "DifixPipeline",
            "_diffusers_version": loading._diffusers_version(),
            "_name_or_path": str(self.config.get("_name_or_path", root.name)),
            "feature_extractor": [None, None],
            "image_encoder": [None, None],
            "requires_safety_checker": True,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", type(self.scheduler).__name__],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": [unet_library, "UNet2DConditionModel"],
            "vae": ["autoencoder_kl", "AutoencoderKL"],
        }
        loading.write_json(root / "model_index.json", index)

    # ------------------------------------------------------------------ core tensor path
    @property
    def reference_mixing(self) -> bool:
        return has_reference_attention(self.unet)

    @property
    def model_dtype(self) -> torch.dtype:
        """The UNet's dtype, read from its first weight.

        Not diffusers' ``ModelMixin.dtype`` / ``.device``: they walk every submodule looking for casting hooks
        first (about 1-2 ms a call on the SD-Turbo-sized UNet, host time paid on every frame)."""
        return next(self.unet.parameters()).dtype

    @property
    def model_device(self) -> torch.device:
        """The UNet's device, read from its first weight (see :attr:`model_dtype`)."""
        return next(self.unet.parameters()).device

    def prompt_embeddings(self, prompt: str = DEFAULT_PROMPT) -> torch.Tensor:
        """[1, 77, C] text embedding, computed once per (prompt, device, dtype)."""
        return self._prompt_cache(prompt, self.model_device, self.model_dtype)

    def predict_x0(self, z: torch.Tensor, model_output: torch.Tensor, timestep: int) -> torch.Tensor:
        """One DDPM step from ``timestep`` to t=-1 (alpha_bar_prev = 1), i.e. the x0 prediction, computed in fp32."""
        abar = self.scheduler.alphas_cumprod[int(timestep)].to(torch.float32)
        z32, out32 = z.float(), model_output.float()
        kind = self.scheduler.config.prediction_type
        if kind == "epsilon":
            x0 = (z32 - (1 - abar).sqrt() * out32) / abar.sqrt()
        elif kind == "v_prediction":
            x0 = abar.sqrt() * z32 - (1 - abar).sqrt() * out32
        elif kind == "sample":
            x0 = out32
        else:
            raise ValueError(f"unsupported scheduler prediction_type {kind!r}")
        return x0.to(z.dtype)

    def warn_refs_ignored(self) -> None:
        if not self._warned_refs_ignored:
            logger.warning(
                "This Difix model has no reference mixing (nvidia/difix layout); reference images are ignored. "
                "Use a difix_ref checkpoint to condition on references."
            )
            self._warned_refs_ignored = True

    @torch.no_grad()
    def restore(
        self,
        images: torch.Tensor,
        refs: Optional[torch.Tensor] = None,
        prompt: str = DEFAULT_PROMPT,
        timestep: int = DEFAULT_TIMESTEP,
        prompt_embeds: Optional[torch.Tensor] = None,
        ref_latents: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """images [B,3,h,w] in [-1,1] (h, w multiples of 8), refs [B,V,3,h,w] in [-1,1] or None -> [B,3,h,w].

        The output is in [-1,1] and in the pipeline's dtype; V may be 0 (or refs None) on any model.
        ``ref_latents`` [B,V,4,h/8,w/8] (from :meth:`encode_latents`) replaces ``refs``: the references are then
        not encoded again, so callers can cache them across frames.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B,3,H,W], got {tuple(images.shape)}")
        if images.shape[-2] % 8 or images.shape[-1] % 8:
            raise ValueError(f"image size {tuple(images.shape[-2:])} must be a multiple of 8 (floor it first)")
        device, dtype = self.model_device, self.model_dtype
        batch = images.shape[0]
        if refs is not None and ref_latents is not None:
            raise ValueError("pass refs or ref_latents, not both")
        if ref_latents is not None and ref_latents.shape[1] > 0:
            if not self.reference_mixing:
                self.warn_refs_ignored()
            else:
                return self._restore_with_latents(images, ref_latents, prompt, timestep, prompt_embeds)
        if refs is not None and refs.shape[1] > 0 and not self.reference_mixing:
            self.warn_refs_ignored()
            refs = None
        if refs is not None and refs.shape[1] > 0:
            if refs.ndim != 5 or refs.shape[0] != batch or tuple(refs.shape[2:]) != tuple(images.shape[1:]):
                raise ValueError(f"refs must be [B={batch},V,3,H,W] matching images, got {tuple(refs.shape)}")
            views = 1 + refs.shape[1]
            x = torch.cat([images[:, None], refs], dim=1).flatten(0, 1)  # [img_0, ref_0a.., img_1, ...]
        else:
            views = 1
            x = images
        x = x.to(device=device, dtype=dtype)
        posterior, skips = self.vae.encode_with_skips(x, keep_every=views)
        scale = self.vae.config.scaling_factor
        z = posterior.mode() * scale
        emb = prompt_embeds if prompt_embeds is not None else self.prompt_embeddings(prompt)
        emb = emb.to(device=device, dtype=dtype).expand(z.shape[0], -1, -1)
        t = torch.full((z.shape[0],), int(timestep), device=device, dtype=torch.long)
        with reference_views(self.unet, views):
            eps = self.unet(z, t, encoder_hidden_states=emb, return_dict=False)[0]
        z0 = self.predict_x0(z[::views], eps[::views], timestep)  # keep the degraded view only
        out = self.vae.decode_with_skips(z0 / scale, skips)
        if not torch.isfinite(out).all():  # clamp keeps NaN, and NaN -> uint8 is an all-black image
            bad = int((~torch.isfinite(out)).sum())
            raise NonFiniteOutputError(
                f"the Difix model produced {bad} non-finite (NaN/Inf) output values; its weights are corrupt or "
                f"overflow in {dtype} (try --dtype float32)")
        return out.clamp(-1, 1)

    @torch.no_grad()
    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled latent (posterior mode x scaling factor) of images [N,3,h,w] in [-1,1]: what a reference view
        contributes to the UNet, [N,4,h/8,w/8] in the pipeline's dtype."""
        x = images.to(device=self.model_device, dtype=self.model_dtype)
        posterior, _ = self.vae.encode_with_skips(x)
        return posterior.mode() * self.vae.config.scaling_factor

    def _restore_with_latents(self, images, ref_latents, prompt, timestep, prompt_embeds) -> torch.Tensor:
        device, dtype = self.model_device, self.model_dtype
        batch, num_refs = ref_latents.shape[:2]
        if ref_latents.ndim != 5 or batch != images.shape[0]:
            raise ValueError(f"ref_latents must be [B={images.shape[0]},V,C,h,w], got {tuple(ref_latents.shape)}")
        posterior, skips = self.vae.encode_with_skips(images.to(device=device, dtype=dtype))
        scale = self.vae.config.scaling_factor
        z = posterior.mode() * scale
        if tuple(ref_latents.shape[2:]) != tuple(z.shape[1:]):
            raise ValueError(f"ref_latents {tuple(ref_latents.shape)} do not match the image latents {tuple(z.shape)}")
        views = 1 + num_refs
        joint = torch.cat([z[:, None], ref_latents.to(device=device, dtype=dtype)], dim=1).flatten(0, 1)
        emb = prompt_embeds if prompt_embeds is not None else self.prompt_embeddings(prompt)
        emb = emb.to(device=device, dtype=dtype).expand(joint.shape[0], -1, -1)
        t = torch.full((joint.shape[0],), int(timestep), device=device, dtype=torch.long)
        with reference_views(self.unet, views):
            eps = self.unet(joint, t, encoder_hidden_states=emb, return_dict=False)[0]
        z0 = self.predict_x0(z, eps[::views], timestep)
        return self.vae.decode_with_skips(z0 / scale, skips).clamp(-1, 1)

    # ------------------------------------------------------------------ seed API
    @torch.no_grad()
    def __call__(
        self,
        prompt: Optional[str] = None,
        image: Optional[ImageInput] = None,
        ref_image: Optional[Any] = None,
        height: Optional[int] = None,
        width: Optional[int] = None,
        num_inference_steps: int = 1,
        timesteps: Optional[Sequence[int]] = None,
        guidance_scale: float = 0.0,
        negative_prompt: Optional[str] = None,
        num_images_per_prompt: int = 1,
        generator: Optional[torch.Generator] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        output_type: str = "pil",
        return_dict: bool = True,
        **kwargs: Any,
    ):
        """Restore one image or a list; ``ref_image``: None, an image, a list of V images (single input) or a list
        with one image / list of images per input. Outputs have the input's size (any size >= 64 px)."""
        timestep = self._single_timestep(num_inference_steps, timesteps)
        if guidance_scale > 1.0 or negative_prompt is not None:
            raise ValueError("Difix is single-step and trained without classifier-free guidance; use guidance_scale=0")
        if num_images_per_prompt != 1:
            raise ValueError("Difix is deterministic; num_images_per_prompt must be 1")
        if kwargs:
            logger.info("DifixPipeline ignores arguments: %s", ", ".join(sorted(kwargs)))
        if image is None:
            raise ValueError("`image` is required: Difix restores an input render")
        if output_type not in ("pil", "pt", "np"):
            raise ValueError(f"output_type must be 'pil', 'pt' or 'np', got {output_type!r}")
        images, refs = self._normalize_inputs(image, ref_image)
        prompt = DEFAULT_PROMPT if prompt is None else prompt
        prepared = [imgproc.prepare_views_pil(img, img_refs) for img, img_refs in zip(images, refs)]
        # Inputs of equal (floored) size and reference count run as one batch.
        groups: dict[tuple, list[int]] = {}
        for i, (x, r, _) in enumerate(prepared):
            groups.setdefault((tuple(x.shape), 0 if r is None else r.shape[0]), []).append(i)
        outputs: list[Any] = [None] * len(prepared)
        for (_, num_refs), members in groups.items():
            x = torch.stack([prepared[i][0] for i in members]) * 2 - 1
            r = torch.stack([prepared[i][1] for i in members]) * 2 - 1 if num_refs else None
            y = self.restore(x, r, prompt=prompt, timestep=timestep, prompt_embeds=prompt_embeds)
            y = ((y.float() + 1) / 2).cpu()
            for j, i in enumerate(members):
                if output_type == "pil":
                    outputs[i] = imgproc.restore_size_pil(y[j], prepared[i][2])
                else:  # float32 in [0, 1], not rounded to 8 bits (diffusers' convention for "np" / "pt")
                    outputs[i] = imgproc.resize_tensor(y[j], prepared[i][2]).clamp(0, 1).float()
        result = self._format(outputs, output_type)
        if not return_dict:
            return (result, None)
        return StableDiffusionPipelineOutput(images=result, nsfw_content_detected=None)

    @staticmethod
    def _single_timestep(num_inference_steps: int, timesteps: Optional[Sequence[int]]) -> int:
        if timesteps is not None:
            steps = [int(t) for t in timesteps]
            if len(steps) != 1:
                raise ValueError(f"Difix is a single-step model: pass one timestep (e.g. [199]), got {steps}")
            if not 0 <= steps[0] < 1000:
                raise ValueError(f"timestep must be in [0, 1000), got {steps[0]}")
            return steps[0]
        if num_inference_steps != 1:
            raise ValueError(f"Difix is a single-step model: num_inference_steps must be 1, got {num_inference_steps}")
        return DEFAULT_TIMESTEP

    def _normalize_inputs(self, image, ref_image) -> tuple[list[Image.Image], list[list[Image.Image]]]:
        if isinstance(image, torch.Tensor):
            batch = image[None] if image.ndim == 3 else image
            images = [imgproc.tensor_to_pil(im) for im in batch]
        elif isinstance(image, Image.Image):
            images = [image]
        elif isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3:
                raise TypeError(f"numpy images must be uint8 [H,W,C], got {image.dtype} {image.shape}")
            images = [Image.fromarray(image)]
        else:
            images = list(image)
        for i, im in enumerate(images):
            if not isinstance(im, Image.Image):
                raise TypeError(f"image[{i}] is {type(im).__name__}; expected a PIL image")
        single = len(images) == 1 and not isinstance(image, (list, tuple)) and not (
            isinstance(image, torch.Tensor) and image.ndim == 4
        )
        if ref_image is None:
            refs = [[] for _ in images]
        elif isinstance(ref_image, Image.Image):
            refs = [[ref_image] for _ in images] if single else None
            if refs is None:
                raise ValueError(f"{len(images)} images were given with a single ref_image; pass one ref per image")
        elif single:
            refs = [list(ref_image)]  # V references for the one image
        else:
            ref_list = list(ref_image)
            if len(ref_list) != len(images):
                raise ValueError(f"got {len(images)} images but {len(ref_list)} ref_image entries; they must match")
            refs = [[r] if isinstance(r, Image.Image) else list(r) for r in ref_list]
        for i, rs in enumerate(refs):
            for r in rs:
                if not isinstance(r, Image.Image):
                    raise TypeError(f"ref_image for image {i} is {type(r).__name__}; expected a PIL image")
        if any(refs) and not self.reference_mixing:
            self.warn_refs_ignored()
            refs = [[] for _ in images]
        return images, refs

    @staticmethod
    def _format(outputs: list, output_type: str):
        """PIL images as they are; float tensors [3,H,W] as a stacked tensor ("pt") or [H,W,3] arrays ("np")."""
        if output_type == "pil":
            return outputs
        tensors = outputs
        if output_type == "pt":
            return tensors if len({t.shape for t in tensors}) > 1 else torch.stack(tensors)
        return [t.permute(1, 2, 0).numpy() for t in tensors]

"""``DifixAutoencoderKL``: the SD VAE with pix2pix-turbo style encoder->decoder skips and a PEFT LoRA decoder.

Structure (reference: difix_checkpoint.md §1b):
- four bias-free 1x1 ``decoder.skip_conv_{1..4}``; for the SD VAE 512->512, 256->512, 128->512, 128->256,
  initialised to the constant 1e-5 (a near-zero conv so a fresh model starts as the plain VAE);
- the encoder records the *input* of every down block; before decoder up block ``i`` the decoder adds
  ``skip_conv_{i+1}(skip[-1-i] * gamma)``;
- a PEFT LoRA adapter ``vae_skip`` (rank ``lora_rank``, ``lora_alpha`` 8 = PEFT's default, gaussian init) on the
  43 decoder modules whose names end in conv1/conv2/conv_in/conv_shortcut/conv/conv_out/skip_conv_*/to_q/k/v/out.0;
- the encoder is frozen.

The weights file stores the adapter unmerged (``X.base_layer.weight``, ``X.lora_A.vae_skip.weight``, ...), which is
exactly ``state_dict()`` of this module, so checkpoints load strictly. Skips are passed explicitly (no state on
the module), which keeps batching, references and ``torch.compile`` simple; never enable VAE slicing/tiling here.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from diffusers import AutoencoderKL
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import nn

ADAPTER_NAME = "vae_skip"
SKIP_INIT = 1e-5
_LORA_SUFFIXES = (
    "conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out",
    "skip_conv_1", "skip_conv_2", "skip_conv_3", "skip_conv_4",
    "to_k", "to_q", "to_v", "to_out.0",
)  # fmt: skip


def skip_channels(block_out_channels: Sequence[int]) -> list[tuple[int, int]]:
    """(in, out) channels of skip_conv_1..n for a VAE with these block widths.

    Encoder down-block inputs are [c0 (conv_in), c0, c1, ..., c_{n-2}]; they are used in reverse order and must
    match the input width of decoder up blocks [c_{n-1}, c_{n-1}, c_{n-2}, ..., c1].
    """
    c = list(block_out_channels)
    skips_in = ([c[0]] + c[:-1])[::-1]
    up_in = [c[-1]] + c[::-1][:-1]
    return list(zip(skips_in, up_in))


def decoder_lora_targets(model: nn.Module) -> list[str]:
    """Full names of the decoder modules the ``vae_skip`` adapter wraps (43 for the SD VAE)."""
    return [
        name
        for name, _ in model.named_modules()
        if "decoder" in name and any(name.endswith(s) for s in _LORA_SUFFIXES)
    ]


class DifixAutoencoderKL(AutoencoderKL):
    """AutoencoderKL + decoder skip convs + ``vae_skip`` LoRA.

    Config extras (kept in config.json): lora_rank, lora_alpha, gamma, ignore_skip.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
        shift_factor: Optional[float] = None,
        latents_mean: Optional[tuple[float, ...]] = None,
        latents_std: Optional[tuple[float, ...]] = None,
        force_upcast: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = True,
        lora_rank: int = 4,
        lora_alpha: float = 8,
        gamma: float = 1.0,
        ignore_skip: bool = False,
    ):
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=down_block_types,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            act_fn=act_fn,
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
            sample_size=sample_size,
            scaling_factor=scaling_factor,
            shift_factor=shift_factor,
            latents_mean=latents_mean,
            latents_std=latents_std,
            force_upcast=force_upcast,
            use_quant_conv=use_quant_conv,
            use_post_quant_conv=use_post_quant_conv,
            mid_block_add_attention=mid_block_add_attention,
        )
        for i, (c_in, c_out) in enumerate(skip_channels(block_out_channels)):
            conv = nn.Conv2d(c_in, c_out, kernel_size=1, bias=False)
            nn.init.constant_(conv.weight, SKIP_INIT)
            self.decoder.add_module(f"skip_conv_{i + 1}", conv)
        self.encoder.requires_grad_(False)
        if lora_rank > 0:
            from peft import LoraConfig

            lora = LoraConfig(
                r=lora_rank,
                lora_alpha=lora_alpha,
                init_lora_weights="gaussian",
                target_modules=decoder_lora_targets(self),
            )
            self.add_adapter(lora, adapter_name=ADAPTER_NAME)

    def enable_tiling(self, *args, **kwargs) -> None:
        raise ValueError("DifixAutoencoderKL cannot tile: decoder skips need whole-image encoder activations")

    def enable_slicing(self, *args, **kwargs) -> None:
        raise ValueError("DifixAutoencoderKL does not slice batches: encode_with_skips keeps views aligned itself")

    def _lora_layers(self) -> list[nn.Module]:
        if self.config.lora_rank <= 0:
            return []  # built without the adapter (and possibly without peft installed)
        from peft.tuners.tuners_utils import BaseTunerLayer

        return [m for m in self.modules() if isinstance(m, BaseTunerLayer)]

    @property
    def lora_merged(self) -> bool:
        return any(m.merged for m in self._lora_layers())

    def merge_lora(self) -> None:
        """Fold ``vae_skip`` into the base weights for inference (saves 43 extra low-rank convs per decode).

        The state dict keeps its PEFT keys but ``base_layer`` then holds merged values; ``unmerge_lora`` restores
        them (``DifixPipeline.save_pretrained`` does so before writing).
        """
        for m in self._lora_layers():
            if not m.merged:
                m.merge(adapter_names=[ADAPTER_NAME])

    def unmerge_lora(self) -> None:
        for m in self._lora_layers():
            if m.merged:
                m.unmerge()

    def _in_weight_layout(self, h: torch.Tensor) -> torch.Tensor:
        """``h`` in the memory layout of this model's weights. diffusers' attention returns its [N,C,H,W] output as
        a channels_last-strided view of [N,HW,C]; left so after a mid block, the residual adds keep that layout up
        to the image and, with weights in the default layout, every GroupNorm and convolution of the decoder
        converts it back and forth (about a third of an eager fix's GPU time at 576x1024). A copy here at the
        latent resolution costs little; with channels_last weights (the compiled fast path) it is a no-op."""
        weight = self.encoder.conv_in.weight  # a 3x3 conv over 3 channels: its two layouts have distinct strides
        channels_last = weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        return h.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    @property
    def skip_convs(self) -> list[nn.Module]:
        return [getattr(self.decoder, f"skip_conv_{i + 1}") for i in range(len(self.decoder.up_blocks))]

    def encode_with_skips(
        self, x: torch.Tensor, keep_every: int = 1
    ) -> tuple[DiagonalGaussianDistribution, list[torch.Tensor]]:
        """Encode x [N,3,H,W] in [-1,1]; also return the down-block inputs of items 0, k, 2k, ... (k=keep_every).

        With references the batch is [img_0, ref_0a, .., img_1, ...] and ``keep_every = 1 + V`` keeps the skips of
        the degraded views only: the decoder skips always come from the degraded input.
        """
        enc = self.encoder
        h = enc.conv_in(x)
        skips = []
        for block in enc.down_blocks:
            # A strided view would keep the reference views' activations alive until decoding; copy instead.
            skips.append(h[::keep_every].clone() if keep_every > 1 else h)
            h = block(h)
        h = self._in_weight_layout(enc.mid_block(h))
        h = enc.conv_act(enc.conv_norm_out(h))
        h = enc.conv_out(h)
        moments = self.quant_conv(h) if self.quant_conv is not None else h
        return DiagonalGaussianDistribution(moments), skips

    def decode_with_skips(self, z: torch.Tensor, skips: Optional[Sequence[torch.Tensor]]) -> torch.Tensor:
        """Decode unscaled latents z [N,4,h,w] to [N,3,8h,8w]; ``skips`` from ``encode_with_skips`` (or None)."""
        dec = self.decoder
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        h = dec.conv_in(z)
        h = self._in_weight_layout(dec.mid_block(h, None))
        use_skips = skips is not None and not self.config.ignore_skip
        if use_skips and len(skips) != len(dec.up_blocks):
            raise ValueError(f"expected {len(dec.up_blocks)} skip activations, got {len(skips)}")
        for i, block in enumerate(dec.up_blocks):
            if use_skips:
                s = skips[-1 - i]
                if s.shape[0] != h.shape[0]:
                    raise ValueError(f"skip batch {s.shape[0]} does not match latent batch {h.shape[0]}")
                h = h + self.skip_convs[i](s.to(h.dtype) * self.config.gamma)
            h = block(h, None)
        h = dec.conv_act(dec.conv_norm_out(h))
        return dec.conv_out(h)

    def forward(self, sample: torch.Tensor, sample_posterior: bool = False, return_dict: bool = True, generator=None):
        """Autoencode with the skips of the same input (deterministic mode() unless ``sample_posterior``)."""
        from diffusers.models.autoencoders.vae import DecoderOutput

        posterior, skips = self.encode_with_skips(sample)
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        out = self.decode_with_skips(z, skips)
        return DecoderOutput(sample=out) if return_dict else (out,)

"""Random-weight Difix models in the exact Hugging Face layout, for offline tests and benchmarks.

``save_tiny_difix(path, reference_mixing)`` writes a ~4 MB model whose module structure and state-dict key names
equal the real ``nvidia/difix`` / ``nvidia/difix_ref`` (338 VAE keys, 686 UNet keys; only the widths are small),
with a tiny CLIP tokenizer built offline. ``build_difix_pipeline(size="real")`` builds the SD-Turbo-sized
architecture in memory (random weights) for timing. Random weights prove plumbing, not quality.

The console script ``difix-make-tiny-model`` (:mod:`difix_ns.cli.make_tiny_model`) writes these folders; ``--kind
fixer`` writes the ``nvidia/Fixer`` layout instead (see ``difix_ns.fixers.cosmos_testing``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

import torch

from difix_ns.diffusion.random_weights import mark_random_weights

TINY_WORDS = ("remove", "degradation")  # the Difix prompt is tokenised into whole words
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes: printable Latin-1 bytes map to themselves,
    the others to code points from 256 upwards. Ordered as in CLIP's vocabulary (printable ones first, so the
    SD-2 pad token "!" gets id 0)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    others = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(others))]


def tiny_clip_vocab(words=TINY_WORDS) -> tuple[dict[str, int], list[str]]:
    """Byte-level CLIP vocabulary: 256 bytes, 256 end-of-word bytes, merges spelling ``words``, specials last."""
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    merges: list[str] = []
    for word in words:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            merge = f"{parts[0]} {parts[1]}"
            merged = parts[0] + parts[1]
            if merge not in merges:
                merges.append(merge)
                tokens.append(merged)
            parts = [merged] + parts[2:]
    tokens += list(SPECIAL_TOKENS)
    return {tok: i for i, tok in enumerate(tokens)}, merges


def write_tiny_tokenizer(folder: Path) -> int:
    """Write vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json (SD-2 style, pad '!').

    Returns the vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_clip_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    bos, eos = SPECIAL_TOKENS
    special = {"bos_token": bos, "eos_token": eos, "unk_token": eos, "pad_token": "!"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = dict(special, tokenizer_class="CLIPTokenizer", model_max_length=77, do_lower_case=True)
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return len(vocab)


def _build_components(configs: dict, seed: int, device: Optional[str] = None):
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from difix_ns.models.autoencoder import DifixAutoencoderKL

    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = DifixAutoencoderKL.from_config(configs["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(configs["text_encoder"]))
    # The training init leaves LoRA B at zero and skips at 1e-5; perturb them so tests exercise those paths.
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if "lora_B" in name or "skip_conv" in name:
                p.normal_(0.0, 0.02)
    scheduler = DDPMScheduler.from_config(configs["scheduler"])
    for m in (unet, vae, text_encoder):
        m.eval().requires_grad_(False)
    return unet, vae, text_encoder, scheduler


def build_difix_pipeline(
    size: Literal["tiny", "real"] = "tiny",
    reference_mixing: bool = True,
    seed: int = 0,
    device: Optional[str] = None,
    tokenizer_dir: Optional[Path] = None,
    vae_lora: bool = True,
):
    """A random-weight ``DifixPipeline`` in memory. ``size="real"`` is the SD-Turbo-sized architecture of
    nvidia/difix(_ref) (865.9M-parameter UNet, 23-layer 1024-d CLIP text tower); build it on ``device="cuda"``.
    ``vae_lora=False`` leaves out the decoder adapter (same compute as a merged LoRA; no peft needed)."""
    import tempfile

    from transformers import CLIPTokenizer

    from difix_ns.models.configs import real_configs, tiny_configs
    from difix_ns.pipeline_difix import DifixPipeline

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tokenizer_dir) if tokenizer_dir is not None else Path(tmp) / "tokenizer"
        vocab_size = write_tiny_tokenizer(folder) if tokenizer_dir is None else None
        tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    configs = tiny_configs(vocab_size or len(tokenizer)) if size == "tiny" else real_configs()
    if not vae_lora:
        configs["vae"]["lora_rank"] = 0
    unet, vae, text_encoder, scheduler = _build_components(configs, seed, device)
    return DifixPipeline(vae, text_encoder, tokenizer, unet, scheduler, reference_mixing=reference_mixing)


def save_tiny_difix(path, reference_mixing: bool = True, seed: int = 0) -> Path:
    """Write a tiny random-weight Difix (``reference_mixing`` -> difix_ref layout) to ``path``; returns the path."""
    path = Path(path)
    pipe = build_difix_pipeline("tiny", reference_mixing=reference_mixing, seed=seed)
    pipe.register_to_config(_name_or_path=f"tiny-difix{'_ref' if reference_mixing else ''}")
    pipe.save_pretrained(path)
    write_tiny_tokenizer(path / "tokenizer")  # the hand-written SD-2 style tokenizer files, as in the real layout
    mark_random_weights(path)  # tools loading this folder print the PLUMBING ONLY banner
    return path

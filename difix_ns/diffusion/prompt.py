"""Cached prompt embeddings.

Difix (and NiFi's SD-Turbo restorer) always use one fixed prompt, so the text encoder runs once per
(prompt, device, dtype) and the result is reused for every frame.
"""
from __future__ import annotations

from typing import Callable

import torch


class PromptEmbeddingCache:
    """Memoises ``encode(prompt) -> Tensor[1, L, C]`` per prompt, device and dtype."""

    def __init__(self, encode: Callable[[str], torch.Tensor]):
        self._encode = encode
        self._cache: dict[tuple[str, str, torch.dtype], torch.Tensor] = {}

    def __call__(self, prompt: str, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
        key = (prompt, str(torch.device(device)), dtype)
        if key not in self._cache:
            with torch.no_grad():
                self._cache[key] = self._encode(prompt).to(device=device, dtype=dtype)
        return self._cache[key]

    def clear(self) -> None:
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)


def clip_prompt_encoder(tokenizer, text_encoder) -> Callable[[str], torch.Tensor]:
    """SD-2 style prompt encoding: pad to ``model_max_length``, last hidden state (final layer norm applied)."""

    def encode(prompt: str) -> torch.Tensor:
        ids = tokenizer(
            [prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        device = next(text_encoder.parameters()).device
        return text_encoder(ids.to(device))[0]

    return encode

"""Reference views cost once: their VAE latents, cached across frames and fix rounds.

A reference view contributes only its latent to the Difix UNet (the decoder skips always come from the degraded
render), so the VAE encoder runs once per distinct reference image. Entries are keyed by the reference's *content*
(two 64-bit linear hashes of its raw bits with fixed random odd weights, integer arithmetic, so the key does not
depend on the batch it arrived in or on the device), its shape and dtype, the size it is resized to, and the model
(identity and dtype). A cache hit returns exactly the tensor a recomputation would give: every miss is encoded
alone, one view per encoder call, so a latent never depends on what it was batched with.

Beyond the latent nothing is per-reference: in the reference-mixing UNet every layer's reference tokens attend to
the degraded view's tokens, so the UNet itself must run on the reference latent for each frame.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable

import torch

_BIT_VIEWS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_HASH_SEED = 0x5EED_D1F1


@dataclass(frozen=True)
class EncodedReferences:
    """The reference views of one ``DifixFixer.fix`` call, already encoded (``DifixFixer.encode_references``).

    ``latents`` [B, V, 4, h/8, w/8] for renders of ``image_size`` (H, W). Encoding them first, apart from the fix,
    lets a caller that queues the fix behind other GPU work (the render hook's fixer stream) do the host-side part
    of the lookup (reading the references' content hashes back) before that, on its own stream.
    """

    latents: torch.Tensor
    image_size: tuple[int, int]


class ReferenceLatentCache:
    """LRU map from reference content to its latent; ``capacity`` latents (about 74 KB each at 576x1024 bf16)."""

    def __init__(self, capacity: int = 256):
        if capacity < 0:
            raise ValueError(f"reference cache capacity must be >= 0, got {capacity}")
        self.capacity = int(capacity)
        self._entries: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._weights: dict[tuple[int, str], torch.Tensor] = {}
        self.hits = 0
        self.misses = 0
        self.generation = 0
        """Counts :meth:`clear` calls: latents kept elsewhere (the render hook's, by training view) are stale once
        it changes."""

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.misses = 0
        self.generation += 1

    def _hash_weights(self, length: int, device: torch.device) -> torch.Tensor:
        slot = (length, str(device))
        if slot not in self._weights:
            gen = torch.Generator(device="cpu").manual_seed(_HASH_SEED)
            w = torch.randint(-(2**62), 2**62, (2, length), generator=gen, dtype=torch.int64) | 1
            self._weights = {k: v for k, v in self._weights.items() if k[1] != str(device)}  # one size per device
            self._weights[slot] = w.to(device)
        return self._weights[slot]

    def fingerprints(self, views: torch.Tensor) -> list[tuple[int, int]]:
        """Two 64-bit content hashes per view of ``views`` [N, ...] (exact integer arithmetic on the raw bits)."""
        n = views.shape[0]
        flat = views.detach().reshape(n, -1).contiguous()
        if flat.dtype == torch.bool:
            flat = flat.to(torch.uint8)
        flat = flat.view(_BIT_VIEWS[flat.element_size()])
        w = self._hash_weights(flat.shape[1], flat.device)
        sums = []
        for i in range(n):  # one view at a time keeps the int64 temporaries at one image
            bits = flat[i].to(torch.int64)
            sums.append(torch.stack([(bits * w[0]).sum(), (bits * w[1]).sum()]))
        return [(int(a), int(b)) for a, b in torch.stack(sums).cpu().tolist()]

    def latents(
        self,
        views: torch.Tensor,
        context: Hashable,
        encode: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Latents of ``views`` [N,3,H,W] (any dtype/device), encoding misses one view at a time.

        ``context`` holds everything else the latent depends on (model identity and dtype, target size);
        ``encode`` maps one view [1,3,H,W] to its latent [1,C,h,w].
        """
        meta = (tuple(views.shape[1:]), str(views.dtype), views.device.type, context)
        keys = [(meta, fp) for fp in self.fingerprints(views)] if self.capacity > 0 else [None] * views.shape[0]
        out = []
        for i, key in enumerate(keys):
            latent = self._entries.get(key) if key is not None else None
            if latent is None:
                self.misses += 1
                latent = encode(views[i : i + 1])
                if key is not None:
                    self._entries[key] = latent
                    while len(self._entries) > self.capacity:
                        self._entries.popitem(last=False)
            else:
                self.hits += 1
                self._entries.move_to_end(key)
            out.append(latent)
        return torch.cat(out)

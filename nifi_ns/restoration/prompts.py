"""Prompt embeddings of the restorer: where they come from (one import place for the embedding helpers).

NiFi's released inference conditions the generator on one fixed prompt embedding (``default_embeddings.npz``, built
by the official ``embedding.py`` from the TSD-SR default prompt; reference nifi.md §1.3, §1.6). That file loads as
it is (``prompt_embeds_path``); without it the embedding is computed from :data:`DEFAULT_PROMPT` with the backbone's
own text encoders once, cached, and can be saved to a safetensors file (or the official ``.npz``) so that inference
needs no text encoder at all.

The precomputing CLI is :mod:`nifi_ns.cli.prompt_embeds` (``python -m nifi_ns.cli.prompt_embeds --model_path DIR
[--backbone sd3|sdturbo] --out emb.safetensors|emb.npz``).
"""
from __future__ import annotations

from nifi_ns.restoration.embeds import DEFAULT_PROMPT, NULL_PROMPT, PromptEmbeds
from nifi_ns.restoration.files import load_prompt_embeds

__all__ = ["DEFAULT_PROMPT", "NULL_PROMPT", "PromptEmbeds", "load_prompt_embeds"]

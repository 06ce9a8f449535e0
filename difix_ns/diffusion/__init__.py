"""The diffusion core shared by Difix and NiFi's restorer.

- ``images``: floor to a multiple of 8, resize back (LANCZOS for PIL, antialiased bilinear for tensors)
- ``hub``: hub id / local directory resolution with clear offline errors (``ModelResolutionError``)
- ``prompt``: cached prompt embeddings (``PromptEmbeddingCache``)
- ``state_dict``: strict safetensors loading naming missing / unexpected keys (``StateDictMismatchError``)

Submodules import torch only; diffusers / transformers are imported by the model loaders that need them.
"""
from difix_ns.diffusion.hub import ModelResolutionError, resolve_model_dir
from difix_ns.diffusion.state_dict import StateDictMismatchError, check_state_dict, load_strict

__all__ = ["ModelResolutionError", "resolve_model_dir", "StateDictMismatchError", "check_state_dict", "load_strict"]

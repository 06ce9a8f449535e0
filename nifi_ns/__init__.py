"""NiFi ("Nix and Fix") for nerfstudio: extreme 3DGS compression and one-step diffusion restoration.

Import-light: nerfstudio imports this package for every ``ns-*`` command through the plugin entry points.
"""
from __future__ import annotations

from difix_ns._torch_compat import install_checkpoint_safe_globals
from difix_ns.safe_config import install_safe_config_loading

install_checkpoint_safe_globals()
install_safe_config_loading()  # nerfstudio's config.yml loading builds only config classes (no code runs)

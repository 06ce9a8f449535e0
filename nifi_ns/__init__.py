"""NiFi ("Nix and Fix") for nerfstudio: extreme 3DGS compression and one-step diffusion restoration.

Import-light: nerfstudio imports this package for every ``ns-*`` command through the plugin entry points.
"""
from __future__ import annotations

from difix_ns.nerfstudio_patches import install_at_import

install_at_import()  # checkpoint allow-list + restricted config.yml loading (see difix_ns.nerfstudio_patches)

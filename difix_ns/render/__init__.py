"""Difix3D+: Difix applied at render time: the ``rgb_fixed`` output (``postfix``), trajectory rendering
(``trajectory``), the viewer controls (``viewer``), the shared run set-up (``runtime``) and switches (``settings``).

Library code only: the console scripts ``ns-difix-render``, ``difix-trajectory`` and ``difix-viewer`` live in
:mod:`difix_ns.cli`. Import-light: nothing heavy is imported until an attribute is used. See docs/difix3d_plus.md.
"""
from __future__ import annotations

__all__ = ["install_render_fix", "get_render_hook", "enable_render_fix", "render_fix_enabled"]


def __getattr__(name: str):
    if name in ("install_render_fix", "get_render_hook"):
        from difix_ns.render import postfix

        return getattr(postfix, name)
    if name in ("enable_render_fix", "render_fix_enabled"):
        from difix_ns.render import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'difix_ns.render' has no attribute {name!r}")

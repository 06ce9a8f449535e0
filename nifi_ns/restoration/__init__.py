"""NiFi's one-step artifact restorer (SD3 backbone as in the paper, SD-Turbo option on the Difix core).

Import-light: ``NiFiRestorerConfig`` is a plain dataclass; the model classes (diffusers, peft) load on first use.
"""
from __future__ import annotations

from nifi_ns.restoration.config import NiFiRestorerConfig
from nifi_ns.restoration.embeds import DEFAULT_PROMPT

__all__ = ["NiFiRestorerConfig", "NiFiRestorer", "load_restorer", "DEFAULT_PROMPT"]


def __getattr__(name: str):
    if name in ("NiFiRestorer", "load_restorer"):
        from nifi_ns.restoration import restorer

        return getattr(restorer, name)
    raise AttributeError(f"module 'nifi_ns.restoration' has no attribute {name!r}")

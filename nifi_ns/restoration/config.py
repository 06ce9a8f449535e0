"""Import-light configuration of the NiFi restorer (no diffusers / transformers / peft at module level)."""
from __future__ import annotations

from dataclasses import dataclass

from nifi_ns.restoration.settings import HUB_ALIASES, SD3_HUB_ID, SDTURBO_HUB_ID, NiFiRestorerSettings

__all__ = ["NiFiRestorerConfig", "SD3_HUB_ID", "SDTURBO_HUB_ID", "HUB_ALIASES"]


@dataclass
class NiFiRestorerConfig(NiFiRestorerSettings):
    """One-step NiFi restorer: encode, noise to t0, one Euler step with the φ⁻ LoRA, decode (``setup()`` builds it)."""

    def setup(self, **overrides):
        from nifi_ns.restoration.restorer import NiFiRestorer

        return NiFiRestorer(self, **overrides)

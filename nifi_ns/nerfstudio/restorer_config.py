"""`--pipeline.restorer.*`: the optional restorer of the ns-eval `restored` stage (import-light config).

The restorer's fields are declared once, in ``nifi_ns.restoration.settings.NiFiRestorerSettings``; this stage
config derives from it (so every restorer option is a ``--pipeline.restorer.<field>`` flag) and adds only the
switch ``enabled``.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields

from nifi_ns.restoration.config import NiFiRestorerConfig


@dataclass
class NifiRestorerStageConfig(NiFiRestorerConfig):
    """NiFi restorer applied to compressed renders in ns-eval (off unless `enabled`)."""

    enabled: bool = False
    """Run the `restored` eval stage (adds restored/rate_<r>/* metrics)."""

    def restorer_config(self) -> NiFiRestorerConfig:
        """The restorer's own config (every field but `enabled`). A run's config.yml written before a field existed
        lacks that attribute (the YAML loader restores ``__dict__``); it takes the field's default."""
        values = {}
        for f in fields(NiFiRestorerConfig):
            if f.name in self.__dict__:
                values[f.name] = self.__dict__[f.name]
            elif f.default is not MISSING:
                values[f.name] = f.default
            else:
                values[f.name] = f.default_factory()
        return NiFiRestorerConfig(**values)

    def setup(self, **overrides):
        """Build the restorer (diffusers is imported here, not at config import)."""
        return self.restorer_config().setup(**overrides)

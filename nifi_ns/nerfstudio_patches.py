"""The NiFi side of the plugin's nerfstudio patches: what the ``nifi-splatfacto`` method config installs on import.

All patches are listed, with what they change, why and when, in :mod:`difix_ns.nerfstudio_patches`; this module adds
the one that only NiFi needs (number 7 there):

* **``ns-eval --pipeline.restorer.*``** (:mod:`nifi_ns.nerfstudio.eval_options`). In an ``ns-eval`` process only,
  those options are taken out of ``sys.argv`` (stock ns-eval parses just ``--load-config``, ``--output-path`` and
  ``--render-output-path``) and registered as a ``difix_ns.safe_config.CONFIG_OVERRIDES`` entry that sets them on
  the run's ``pipeline.restorer`` when ``eval_setup`` loads ``config.yml``. Any other command is left alone.

Import-light: the standard library only at import time (the method config imports this for every ``ns-*`` command).
"""
from __future__ import annotations

__all__ = ["install_for_method_configs"]


def install_for_method_configs() -> None:
    """What the ``nifi-splatfacto`` method config installs on import: CPU splatfacto + offline LPIPS (patches 3, 4 of
    :mod:`difix_ns.nerfstudio_patches`) and the ``ns-eval --pipeline.restorer.*`` options (patch 7)."""
    from difix_ns.nerfstudio_patches import install_cpu_support_if_available
    from nifi_ns.nerfstudio.eval_options import install_for_ns_eval

    install_cpu_support_if_available()
    install_for_ns_eval()  # ns-eval --pipeline.restorer.* (stock ns-eval parses only its three options)

"""Every change the plugin makes to nerfstudio, torch and torchvision behaviour, and the functions that install them.

nerfstudio 1.1.5 has no extension point for the things below, so the plugin changes library objects at run time.
Each change is idempotent and touches only what is listed. The code of a patch stays next to the code it serves;
this module is the list, and its functions are what the packages, the method configs and the tools call to install
them (the Difix3D+ render tools and ``difix3d``'s nerfacto model call the same implementation functions of
:mod:`difix_ns.splat` / :mod:`difix_ns.metrics` directly). ``difix_ns`` cannot import ``nifi_ns``: the one NiFi-only
patch is installed by :mod:`nifi_ns.nerfstudio_patches` and listed here too.

1. **Checkpoint allow-list** (:mod:`difix_ns._torch_compat`). *What:* ``torch.serialization.add_safe_globals`` with
   the numpy scalar/array/dtype globals. *Why:* torch >= 2.6 loads with ``weights_only=True``; nerfstudio checkpoints
   hold numpy learning rates, so ns-eval/-render/-viewer/-export and ``--load-dir`` would fail (the safety check
   stays on for everything else). *When:* :func:`install_at_import`, i.e. on ``import difix_ns`` / ``import nifi_ns``
   (every ``ns-*`` command imports the plugin through its entry points).
2. **Restricted ``config.yml`` loading** (:mod:`difix_ns.safe_config`). *What:* the module-global ``yaml`` of
   ``nerfstudio.utils.eval_utils`` and ``nerfstudio.scripts.train`` becomes a shim whose ``load`` uses the restricted
   ``RunConfigLoader`` and then applies ``safe_config.CONFIG_OVERRIDES``; a ``sys.meta_path`` finder does the same to
   those modules when they are imported later. *Why:* nerfstudio reads ``config.yml`` with ``yaml.Loader``, which
   runs any ``!!python/object/apply`` in the file. *When:* :func:`install_at_import`.
3. **CPU splatfacto** (:mod:`difix_ns.splat.cpu`). *What (only without CUDA):* splatfacto's module-level
   ``rasterization`` -> the PyTorch rasterizer, ``get_viewmat`` -> its uncompiled function,
   ``SplatfactoModel.populate_modules`` / ``get_outputs`` and ``FullImageDatamanager._load_images`` wrapped so that
   ``Tensor.cuda()`` goes to the model's device and ``pin_memory()`` is skipped. *Why:* gsplat has no CPU kernels and
   nerfstudio hard-codes ``.cuda()``. *When:* :func:`install_for_method_configs` (import of the ``difix3d*`` and
   ``nifi-splatfacto`` method configs: every ``ns-*`` command), and :func:`install_cpu_support` in the tools that load
   a run themselves (``ns-nifi-export``, the Difix3D+ render tools, fixer-training pair curation).
4. **Offline LPIPS backbones** (:mod:`difix_ns.metrics.weights`, :mod:`difix_ns.splat.cpu`). *What:*
   ``torch.hub.load_state_dict_from_url`` (and torchvision's bound copies) serve the cached ImageNet AlexNet/VGG16
   features when the download cannot happen; ``populate_modules`` of stock ``SplatfactoModel`` and ``NerfactoModel``
   install that first. *Why:* those models build torchmetrics' LPIPS, which downloads AlexNet and crashes offline.
   *When:* with patch 3 (on every machine, CUDA or not), and :func:`install_torchvision_offline_fallback` where a
   model is built directly (``difix3d``'s nerfacto model, the render tools).
5. **Help for stock ``ns-render``** (:mod:`difix_ns.render.stock_ns_render`). *What (only in an ``ns-render``
   process):* imageio-ffmpeg's binary is put on ``PATH`` when there is no system ffmpeg, and asking a stock run for
   ``rgb_fixed`` prints one hint at exit. *Why:* ns-render needs ffmpeg for videos; ``rgb_fixed`` comes from
   ``ns-difix-render``. *When:* :func:`install_for_method_configs`.
6. **Difix3D+ render seams** (:mod:`difix_ns.render.runtime`, :mod:`difix_ns.render.postfix`,
   :mod:`difix_ns.cli.render`). *What (only inside ``ns-difix-render``, ``difix-trajectory`` and ``difix-viewer``,
   within a ``with`` block that restores the originals):* ``eval_setup`` of nerfstudio's render/viewer script also
   installs the render hook, which wraps ``get_outputs_for_camera`` on that one model instance (``rgb_fixed``);
   ns-render's ``_render_trajectory_video`` / ``FixedIndicesEvalDataloader`` announce the cameras so frames are fixed
   in batches; without CUDA ``TORCH_COMPILE_DISABLE`` defaults to 1. *Why:* those scripts reach the pipeline only
   inside their ``main``. *When:* by those tools (they own the context managers).
7. **``ns-eval --pipeline.restorer.*``** (NiFi; :mod:`nifi_ns.nerfstudio.eval_options`). *What (only in an
   ``ns-eval`` process):* those options are removed from ``sys.argv`` and registered as a
   ``safe_config.CONFIG_OVERRIDES`` entry that sets them on the run's ``pipeline.restorer``. *Why:* stock ns-eval
   parses only three options. *When:* ``nifi_ns.nerfstudio_patches.install_for_method_configs`` (import of the
   ``nifi-splatfacto`` method config).
8. **Quicker start of every ``ns-*`` command** (:mod:`difix_ns.nerfstudio.external_methods`). *What:*
   ``ExternalMethodDummyTrainerConfig.__post_init__`` checks its caller's name with ``sys._getframe`` instead of
   ``inspect.stack()``; any other caller still gets nerfstudio's own ``__post_init__``. *Why:* nerfstudio builds 26
   of those configs while importing its method configs, and ``inspect.stack()`` reads every frame's source: ~3.5 s of
   each ``ns-*`` start on a 2-core CPU. *When:* :func:`install_for_method_configs` of the ``difix3d*`` method
   configs only: nerfstudio imports every method-config entry point of this distribution (``nifi-splatfacto``'s
   too) before it builds those configs, so one install covers every ``ns-*`` command.

Not patches (extension points used as designed; nothing is changed for other code): the datamanagers' ``__init__``
(:mod:`difix_ns.nerfstudio.datamanager`) calls nerfstudio's own and turns its ``--eval-mode filename`` ``ValueError``
into one error line; :mod:`difix_ns.models.reference_attention` sets diffusers attention processors on one Difix
UNet instance (``set_processor``).

Import-light: only the standard library and yaml at import time (``difix_ns/__init__`` imports this module); every
other patch module is imported when its function runs.
"""
from __future__ import annotations

from difix_ns._torch_compat import install_checkpoint_safe_globals
from difix_ns.safe_config import install_safe_config_loading

__all__ = [
    "install_at_import",
    "install_cpu_support",
    "install_cpu_support_if_available",
    "install_for_method_configs",
    "install_ns_render_help",
    "install_quick_external_method_check",
    "install_torchvision_offline_fallback",
]


def install_at_import() -> None:
    """Patches 1 and 2: run by ``difix_ns/__init__`` and ``nifi_ns/__init__`` (idempotent, import-light)."""
    install_checkpoint_safe_globals()
    install_safe_config_loading()  # nerfstudio's config.yml loading builds only config classes (no code runs)


def install_cpu_support() -> bool:
    """Patches 3 and 4 for stock splatfacto / nerfacto; True when the CPU patches are (now) active (False on CUDA)."""
    from difix_ns.splat.cpu import install_cpu_support as install

    return install()


def install_cpu_support_if_available() -> None:
    """:func:`install_cpu_support`, unless the CPU shim cannot be imported.

    Runs at import of the plugin's method configs, which nerfstudio imports for every ``ns-*`` command: a broken
    CPU shim must not break those commands, so an import failure leaves nerfstudio untouched.
    """
    try:
        from difix_ns.splat.cpu import install_cpu_support as install
    except ImportError:
        return
    install()


def install_torchvision_offline_fallback() -> None:
    """Patch 4 alone: torchvision's AlexNet/VGG16 downloads fall back to the cached ImageNet features offline."""
    from difix_ns.metrics.weights import install_torchvision_offline_fallback as install

    install()


def install_ns_render_help() -> None:
    """Patch 5: ffmpeg on PATH and the ``rgb_fixed`` hint, in an ``ns-render`` process only."""
    from difix_ns.render.stock_ns_render import install

    install()


def install_quick_external_method_check() -> None:
    """Patch 8: nerfstudio's external-method check without ``inspect.stack()`` (every ``ns-*`` start)."""
    from difix_ns.nerfstudio.external_methods import install

    install()


def install_for_method_configs() -> None:
    """What the ``difix3d*`` method configs install on import (patches 3, 4, 5 and 8)."""
    install_cpu_support_if_available()
    install_ns_render_help()
    # installed here only: nerfstudio loads all three method-config entry points of this distribution (the nifi one
    # too) before it builds the external-method placeholders, so NiFi's ns-* commands start quickly as well
    install_quick_external_method_check()

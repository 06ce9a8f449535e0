"""torch >= 2.6 loads checkpoints with ``weights_only=True`` by default.

nerfstudio 1.1.5 checkpoints hold numpy scalars: ``ExponentialDecayScheduler`` returns ``np.exp(...)``, so a numpy
float64 learning rate lands in ``optimizers/*/param_groups[*]/lr`` and ``schedulers/*/_last_lr``. Loading them
with the safe unpickler fails in ``ns-eval``, ``ns-render``, ``ns-viewer``, ``ns-export`` (``eval_utils.eval_load
_checkpoint``) and ``--load-dir``/``--load-checkpoint`` (``Trainer._load_checkpoint``) with "Unsupported global:
numpy.core.multiarray.scalar". Rather than turning the safety check off, we allow-list the few numpy globals such
checkpoints (and numpy arrays, e.g. poses in plugin state) need; everything else still goes through the safe
unpickler. Both numpy 1.x (``numpy.core``) and numpy 2.x (``numpy._core``) module paths are registered so a
checkpoint written under one numpy major version loads under the other. Installed when the plugin is imported
(:func:`difix_ns.nerfstudio_patches.install_at_import`, patch 1 of that module's list).
"""
from __future__ import annotations

from typing import Callable, List, Tuple, Union

_INSTALLED = False

# Pickle paths numpy writes for scalars and arrays: numpy 1.x uses numpy.core, numpy 2.x numpy._core.
_MULTIARRAY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")


def _numpy_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    import numpy as np

    try:  # numpy >= 2 (numpy 1.26 also ships numpy._core as an alias package)
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # older numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]

    found: List[Union[Callable, Tuple[Callable, str]]] = [np.dtype, np.ndarray]
    for module in _MULTIARRAY_MODULES:
        found += [(scalar, f"{module}.scalar"), (_reconstruct, f"{module}._reconstruct")]
    # Concrete dtype classes (np.dtypes.Float64DType, ...) appear in pickles written by numpy >= 1.25.
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return found


def install_checkpoint_safe_globals() -> None:
    """Allow-list the numpy globals found in nerfstudio checkpoints for ``torch.load`` (idempotent, cheap)."""
    global _INSTALLED
    if _INSTALLED:
        return
    import torch

    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:  # torch < 2.4 has no weights_only default to worry about
        add(_numpy_globals())
    _INSTALLED = True

"""Restricted YAML loading for nerfstudio run configs (``config.yml``).

nerfstudio 1.1.5 reads ``config.yml`` with ``yaml.Loader``, which runs any ``!!python/object/apply`` it finds: a
shared or downloaded run folder could execute code through ``ns-eval``, ``ns-render``, ``ns-viewer``,
``ns-train --load-config`` and every plugin tool. :class:`RunConfigLoader` is a ``yaml.SafeLoader`` that builds only
what nerfstudio's own ``yaml.dump`` writes for a ``TrainerConfig``:

- ``!!python/object:`` of *dataclasses* defined in ``nerfstudio``, ``difix_ns`` or ``nifi_ns``;
- ``!!python/object/apply:`` of ``pathlib`` paths, of enums defined in those packages, and ``_operator.getitem``
  on such a class (a subscripted generic such as ``VanillaDataManager[DepthDataset]``);
- ``!!python/name:`` of classes/functions defined in those packages and of ``torch.optim`` optimizer/scheduler
  classes (the ``_target`` fields);
- ``!!python/tuple`` and plain YAML values.

Everything else (``os.system``, ``subprocess.Popen``, ``!!python/module``, ``object/new`` ...) raises
:class:`UnsafeConfigError` before anything is called. :func:`install_safe_config_loading` makes nerfstudio's own
config loading use this loader; :func:`difix_ns.nerfstudio_patches.install_at_import` runs it when the plugin is
imported, i.e. for every stock ``ns-*`` command (patch 2 of that module's list).
"""
from __future__ import annotations

import dataclasses
import enum
import importlib
import importlib.abc
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

# Packages whose config classes (dataclasses, enums) and _target classes/functions may appear in a config.yml.
TRUSTED_PACKAGES = ("nerfstudio", "difix_ns", "nifi_ns")
# _target of optimizer / scheduler configs.
TRUSTED_TORCH_MODULES = ("torch.optim",)
_PATH_CLASSES = ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")
_PY = "tag:yaml.org,2002:python/"


class UnsafeConfigError(yaml.constructor.ConstructorError):
    """A config.yml asked for something other than nerfstudio/plugin config classes, paths and plain values."""


def _in_packages(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


class RunConfigLoader(yaml.SafeLoader):
    """SafeLoader plus the few python tags a nerfstudio ``TrainerConfig`` dump contains (see module docstring)."""

    def _refuse(self, node, what: str) -> UnsafeConfigError:
        return UnsafeConfigError(None, None, f"refusing to load {what}: only nerfstudio/plugin config dataclasses, "
                                 "enums, pathlib paths and plain values are allowed in a run config", node.start_mark)

    def _resolve(self, name: str, node) -> Any:
        """Import ``module.attr`` from a trusted package; the object must also be *defined* in one."""
        if "." not in name:
            raise self._refuse(node, f"python name {name!r}")
        module_name, attr = name.rsplit(".", 1)
        allowed = TRUSTED_PACKAGES + TRUSTED_TORCH_MODULES + ("pathlib", "_operator")
        if not _in_packages(module_name, allowed):
            raise self._refuse(node, f"python name {name!r}")
        try:
            module = importlib.import_module(module_name)
            obj = getattr(module, attr)
        except (ImportError, AttributeError) as err:
            raise UnsafeConfigError(None, None, f"refusing to load python name {name!r}: {err}",
                                    node.start_mark) from None
        return obj

    @staticmethod
    def _defined_in(obj: Any, packages) -> bool:
        return _in_packages(getattr(obj, "__module__", None) or "", packages)

    def construct_trusted_name(self, suffix: str, node) -> Any:
        """``!!python/name:X`` (a ``_target`` class or a collate function)."""
        if self.construct_scalar(node):
            raise self._refuse(node, f"python name {suffix!r} with a value")
        obj = self._resolve(suffix, node)
        is_type = isinstance(obj, type)
        if self._defined_in(obj, TRUSTED_PACKAGES) and (is_type or isinstance(obj, types.FunctionType)):
            return obj
        if is_type and self._defined_in(obj, TRUSTED_TORCH_MODULES):
            import torch

            if issubclass(obj, torch.optim.Optimizer) or issubclass(obj, torch.optim.lr_scheduler.LRScheduler):
                return obj
        raise self._refuse(node, f"python name {suffix!r}")

    def construct_trusted_object(self, suffix: str, node):
        """``!!python/object:X`` for a dataclass ``X`` of a trusted package; state set without calling anything."""
        cls = self._resolve(suffix, node)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and self._defined_in(cls, TRUSTED_PACKAGES)):
            raise self._refuse(node, f"python object {suffix!r}")
        instance = cls.__new__(cls)
        yield instance
        if not isinstance(node, yaml.MappingNode):
            raise self._refuse(node, f"python object {suffix!r} without a field mapping")
        state = self.construct_mapping(node, deep=True)
        if not all(isinstance(k, str) for k in state):
            raise self._refuse(node, f"python object {suffix!r} with non-string field names")
        instance.__dict__.update(state)

    def construct_trusted_apply(self, suffix: str, node) -> Any:
        """``!!python/object/apply:X [args]`` for a path class, a trusted enum or ``_operator.getitem``."""
        obj = self._resolve(suffix, node)
        if isinstance(node, yaml.SequenceNode):
            args, kwargs = self.construct_sequence(node, deep=True), {}
        elif isinstance(node, yaml.MappingNode):
            value = self.construct_mapping(node, deep=True)
            if set(value) - {"args"}:  # 'kwds', 'state', 'listitems', 'dictitems' are never written for these
                raise self._refuse(node, f"python apply {suffix!r} with {sorted(map(str, value))}")
            args, kwargs = list(value.get("args", [])), {}
        else:
            raise self._refuse(node, f"python apply {suffix!r}")
        if suffix.startswith("pathlib.") and suffix.split(".", 1)[1] in _PATH_CLASSES:
            if all(isinstance(a, str) for a in args):
                return obj(*args, **kwargs)
        elif isinstance(obj, type) and issubclass(obj, enum.Enum) and self._defined_in(obj, TRUSTED_PACKAGES):
            if len(args) == 1 and isinstance(args[0], (str, int, float, bool, type(None))):
                return obj(args[0])
        elif suffix == "_operator.getitem" and len(args) == 2:
            base, item = args
            if isinstance(base, type) and self._defined_in(base, TRUSTED_PACKAGES) and isinstance(item, type):
                return base[item]
        raise self._refuse(node, f"python apply {suffix!r}")

    def construct_python_tuple(self, node) -> tuple:
        return tuple(self.construct_sequence(node, deep=True))

    def construct_refused(self, suffix: str, node) -> Any:
        raise self._refuse(node, f"tag {node.tag!r}")


RunConfigLoader.add_constructor(_PY + "tuple", RunConfigLoader.construct_python_tuple)
RunConfigLoader.add_constructor(_PY + "none", yaml.SafeLoader.construct_yaml_null)
RunConfigLoader.add_constructor(_PY + "bool", yaml.SafeLoader.construct_yaml_bool)
RunConfigLoader.add_constructor(_PY + "int", yaml.SafeLoader.construct_yaml_int)
RunConfigLoader.add_constructor(_PY + "float", yaml.SafeLoader.construct_yaml_float)
RunConfigLoader.add_constructor(_PY + "str", yaml.SafeLoader.construct_yaml_str)
RunConfigLoader.add_constructor(_PY + "list", yaml.SafeLoader.construct_yaml_seq)
RunConfigLoader.add_constructor(_PY + "dict", yaml.SafeLoader.construct_yaml_map)
RunConfigLoader.add_multi_constructor(_PY + "name:", RunConfigLoader.construct_trusted_name)
RunConfigLoader.add_multi_constructor(_PY + "object:", RunConfigLoader.construct_trusted_object)
RunConfigLoader.add_multi_constructor(_PY + "object/apply:", RunConfigLoader.construct_trusted_apply)
# Any other python tag (object/new, module, ...) and any unknown tag is refused, not silently made a string.
RunConfigLoader.add_multi_constructor(_PY, RunConfigLoader.construct_refused)
RunConfigLoader.add_multi_constructor("!", RunConfigLoader.construct_refused)
RunConfigLoader.add_multi_constructor("tag:", RunConfigLoader.construct_refused)


def safe_load_config_text(text: Any) -> Any:
    """Parse config YAML text (or a stream) with :class:`RunConfigLoader`."""
    loader = RunConfigLoader(text)  # a restricted SafeLoader: builds config classes, paths and plain values only
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_run_config(path: Path, option: str = "--load-config"):
    """A run's ``TrainerConfig`` from ``path``; any problem is a ``SystemExit`` naming the file and the option."""
    from nerfstudio.engine.trainer import TrainerConfig

    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: {option} {path} does not exist or is not a file (expected a run's config.yml)")
    try:
        config = safe_load_config_text(path.read_text())
    except UnsafeConfigError as err:
        raise SystemExit(f"error: {option} {path}: {err.problem} ({err.problem_mark})") from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as err:
        raise SystemExit(f"error: {option} {path} is not a readable nerfstudio config.yml: "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    if not isinstance(config, TrainerConfig):
        raise SystemExit(f"error: {option} {path} is not a nerfstudio config.yml (no TrainerConfig at the top level)")
    return config


CONFIG_OVERRIDES: list[Callable[[Any], Any]] = []
"""Functions applied, in order, to every run config that nerfstudio loads through the restricted loader (e.g.
command-line options a stock ``ns-*`` command does not know, registered by the plugin when it is imported)."""


class _RestrictedYamlModule(types.ModuleType):
    """Stands in for ``yaml`` inside nerfstudio's config-reading modules: ``load`` always uses the safe loader."""

    def __init__(self) -> None:
        super().__init__("yaml")
        self.Loader = RunConfigLoader
        self.UnsafeLoader = RunConfigLoader
        self.FullLoader = RunConfigLoader

    def __getattr__(self, name: str) -> Any:
        return getattr(yaml, name)

    @staticmethod
    def load(stream: Any, Loader: Optional[type] = None) -> Any:  # noqa: N803  (yaml's signature)
        source = getattr(stream, "name", None)
        try:
            config = safe_load_config_text(stream)
        except UnsafeConfigError as err:
            where = f" {source}" if source else ""
            raise SystemExit(f"error: refusing to load config{where}: {err.problem} ({err.problem_mark})") from None
        for override in CONFIG_OVERRIDES:
            config = override(config)
        return config

    unsafe_load = load
    full_load = load


# nerfstudio modules that read config.yml with yaml.Loader: eval_setup (ns-eval/-render/-viewer/-export and every
# plugin tool) and ns-train --load-config.
PATCHED_MODULES = ("nerfstudio.utils.eval_utils", "nerfstudio.scripts.train")
_SHIM = _RestrictedYamlModule()


def _patch(module: types.ModuleType) -> None:
    # both modules read config.yml through their module-global `yaml` (with yaml.Loader): now the shim
    module.yaml = _SHIM


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, is_package, ... of the real loader
        return getattr(self.inner, name)

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        self.inner.exec_module(module)
        _patch(module)


class _PatchingFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in PATCHED_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


_FINDER = _PatchingFinder()


def install_safe_config_loading() -> None:
    """Make nerfstudio load config.yml files with :class:`RunConfigLoader` (idempotent, import-light).

    Modules already imported (or being imported: nerfstudio imports the plugin while ``eval_utils``/``train`` are
    mid-import, after their ``import yaml``) are patched now; later imports through a meta-path finder.
    """
    for name in PATCHED_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            _patch(module)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)

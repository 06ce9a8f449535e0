"""The plugin's patches of nerfstudio / torch / torchvision are all listed in one place (static: nothing is imported).

Every function named ``install*`` in ``difix_ns`` / ``nifi_ns`` changes another library's behaviour; its module must
be named in the list of ``difix_ns/nerfstudio_patches.py`` (NiFi's in ``nifi_ns/nerfstudio_patches.py`` too), and
the packages and method configs must install through those two modules only.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATCH_MODULES = ("difix_ns/nerfstudio_patches.py", "nifi_ns/nerfstudio_patches.py")


def installers() -> dict[str, list[str]]:
    """Module name -> its top-level functions whose name starts with ``install`` (the patch modules excluded)."""
    found: dict[str, list[str]] = {}
    for pkg in ("difix_ns", "nifi_ns"):
        for path in (ROOT / pkg).rglob("*.py"):
            if str(path.relative_to(ROOT)) in PATCH_MODULES:
                continue
            names = [n.name for n in ast.parse(path.read_text()).body
                     if isinstance(n, ast.FunctionDef) and n.name.startswith("install")]
            if names:
                found[".".join(path.relative_to(ROOT).with_suffix("").parts)] = names
    return found


def test_every_installer_module_is_listed():
    listed = (ROOT / PATCH_MODULES[0]).read_text()
    found = installers()
    assert "difix_ns.splat.cpu" in found and "nifi_ns.nerfstudio.eval_options" in found
    assert sorted(m for m in found if f":mod:`{m}`" not in listed) == []


def test_entry_modules_install_through_the_patch_modules():
    direct = {"install_checkpoint_safe_globals", "install_safe_config_loading", "install_cpu_support",
              "install_cpu_support_if_available", "install_for_ns_eval", "install"}
    for rel, expected in [("difix_ns/__init__.py", "install_at_import"), ("nifi_ns/__init__.py", "install_at_import"),
                          ("difix_ns/nerfstudio/method_configs.py", "install_for_method_configs"),
                          ("nifi_ns/nerfstudio/method_configs.py", "install_for_method_configs")]:
        calls = {n.value.func.id for n in ast.parse((ROOT / rel).read_text()).body
                 if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Name)}
        assert calls == {expected}, (rel, calls)
        assert not calls & direct

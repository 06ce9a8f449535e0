"""``ns-eval ... --pipeline.restorer.<field> VALUE``: switch on (or reconfigure) the NiFi restorer for one evaluation.

Stock ``ns-eval`` (nerfstudio 1.1.5) parses only ``--load-config``, ``--output-path`` and ``--render-output-path``.
nerfstudio imports this plugin while ``ns-eval`` starts (entry-point discovery), before it parses its arguments, so:

1. ``install_for_ns_eval`` takes the ``--pipeline.restorer.*`` options out of ``sys.argv`` (ns-eval would reject them);
2. it registers an override with ``difix_ns.safe_config.CONFIG_OVERRIDES``, the restricted loader nerfstudio's
   ``eval_setup`` reads ``config.yml`` through;
3. the override sets those fields on the run's ``pipeline.restorer`` (typed like the ``ns-train`` options; a bad
   name or value is one ``error:`` line, exit 2), and giving a LoRA path switches the restorer on.

Installed by :mod:`nifi_ns.nerfstudio_patches` when the ``nifi-splatfacto`` method config is imported (patch 7 of
the list in :mod:`difix_ns.nerfstudio_patches`). Import-light: the standard library only (``method_configs`` imports
this for every ``ns-*`` command).
"""
from __future__ import annotations

import sys
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, List, Optional

PREFIX = "--pipeline.restorer."
NS_EVAL = "ns-eval"


def take_restorer_options(argv: List[str]) -> Dict[str, str]:
    """Remove ``--pipeline.restorer.NAME VALUE`` / ``--pipeline.restorer.NAME=VALUE`` from ``argv`` (in place, from
    index 1 on) and return ``{field_name: value_text}``."""
    found: Dict[str, str] = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith(PREFIX):
            i += 1
            continue
        name, has_value, value = arg[len(PREFIX):].partition("=")
        if has_value:
            del argv[i]
        else:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise SystemExit(f"error: {arg} needs a value")
            value = argv[i + 1]
            del argv[i : i + 2]
        found[name.replace("-", "_")] = value
    return found


def _parse(option: str, text: str, annotation: Any) -> Any:
    """``text`` as a value of the field type ``annotation`` (bool, int, float, str, Literal, Optional of those)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union:  # Optional[X]
        if text in ("None", "none", "null"):
            return None
        annotation = next(a for a in args if a is not type(None))
        args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        if text not in args:
            raise SystemExit(f"error: {option} must be one of {', '.join(map(str, args))}, got {text!r}")
        return text
    if annotation is bool:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise SystemExit(f"error: {option} must be True or False, got {text!r}")
        return lowered in ("true", "1", "yes")
    if annotation is dict or typing.get_origin(annotation) is dict:
        raise SystemExit(f"error: {option} is a mapping and cannot be given on the ns-eval command line; set it on "
                         "the run's config (ns-train --pipeline.restorer...)")
    if annotation in (int, float):
        try:
            return annotation(text)
        except ValueError:
            raise SystemExit(f"error: {option} must be a number ({annotation.__name__}), got {text!r}") from None
    return text


def apply_restorer_options(config: Any, options: Dict[str, str]) -> Any:
    """Set ``options`` on ``config.pipeline.restorer`` (a ``NifiRestorerStageConfig``); returns ``config``."""
    restorer = getattr(getattr(config, "pipeline", None), "restorer", None)
    if restorer is None:
        method = getattr(config, "method_name", "this run")
        raise SystemExit(f"error: --pipeline.restorer.* options need a nifi-splatfacto run; {method} has no restorer")
    hints = typing.get_type_hints(type(restorer))
    names = {f.name for f in fields(restorer)}
    for name, text in options.items():
        option = PREFIX + name.replace("_", "-")
        if name not in names:
            valid = ", ".join(PREFIX + n.replace("_", "-") for n in sorted(names))
            raise SystemExit(f"error: unknown option {option}; valid: {valid}")
        setattr(restorer, name, _parse(option, text, hints[name]))
    if "lora_path" in options and "enabled" not in options and restorer.lora_path:
        restorer.enabled = True  # naming the restorer's weights means: evaluate with it
    return config


def install_for_ns_eval(argv: Optional[List[str]] = None) -> None:
    """In an ``ns-eval`` process, move the ``--pipeline.restorer.*`` options from the command line onto the run's
    config (see the module docstring). Does nothing in any other command."""
    argv = sys.argv if argv is None else argv
    if not argv or Path(argv[0]).name != NS_EVAL:
        return
    options = take_restorer_options(argv)
    if not options:
        return
    from difix_ns.safe_config import CONFIG_OVERRIDES

    CONFIG_OVERRIDES.append(lambda config: apply_restorer_options(config, options))

"""Every console entry point of ``nifi_ns``.

``ns-nifi-export`` (``export``), ``ns-nifi-eval`` (``ns_eval``: ``ns-eval`` with restorer overrides),
``nifi-convert-checkpoint`` (``convert_checkpoint``), ``nifi-train`` (``train``), ``nifi-eval`` (``evaluate``),
``nifi-eval-benchmark`` (``evaluate_benchmark``), ``python -m nifi_ns.cli.prompt_embeds`` and
``python -m nifi_ns.cli.make_tiny_backbone``. ``scripts/train_nifi.py``, ``eval_nifi.py`` and
``eval_benchmark_nifi.py`` are thin wrappers of the three restorer tools. ``options`` (rate/size checks) and
``evaluation_common`` (the two evaluations' options, checks and run) are shared. Library modules hold no ``main``.

Command-line style (the rule of :mod:`difix_ns.cli`): a tyro dataclass for every tool; the nerfstudio-side tools
(``ns-nifi-export``, ``ns-nifi-eval``, ``nifi-convert-checkpoint``) use hyphenated flags, the restorer and data tools
keep the NiFi reference scripts' underscored flags (``--data_root``, ``--smoke_test``) via
:func:`difix_ns.cli.tyro_style.parse`, and their ``scripts/`` wrappers run the same ``main``. YAML is used only for
the training hyper-parameters: ``nifi-train --config`` (``configs/default.yaml``, read with ``yaml.safe_load``).
"""

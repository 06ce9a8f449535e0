"""Every console entry point of ``difix_ns`` (except the Difix3D+ render tools, which live in ``difix_ns.render``).

``difix-fix`` (``fix_images``), ``difix-enhance-video`` (``enhance_video``), ``difix-demo`` (``demo``),
``difix-make-tiny-model`` (``make_tiny_model``), ``difix-fetch-metric-weights`` (``fetch_metric_weights``),
``difix-make-pairs`` (``make_pairs``), ``difix-train`` (``train``); ``common`` holds their shared error reporting,
progress bars and model loading. Library modules hold no ``main``.

Command-line style, one rule for every tool of the plugin: options are a tyro dataclass (nerfstudio's style:
hyphenated flags, the docstring under each field is its help). The exception is a tool whose command line is the
Difix3D / NiFi reference scripts' (underscored flags such as ``--model_name``, ``--data_root``; the README's
commands are checked against those parsers): it keeps one argparse parser with exactly those flags, built in its
``cli`` module and reused by the ``scripts/`` wrapper. The only configuration file is NiFi training's
``configs/default.yaml``, read with ``yaml.safe_load`` (:mod:`nifi_ns.training.config`).
"""

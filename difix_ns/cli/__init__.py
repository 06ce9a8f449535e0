"""Every console entry point of ``difix_ns`` (except the Difix3D+ render tools, which live in ``difix_ns.render``).

``difix-fix`` (``fix_images``), ``difix-enhance-video`` (``enhance_video``), ``difix-demo`` (``demo``),
``difix-make-tiny-model`` (``make_tiny_model``), ``difix-fetch-metric-weights`` (``fetch_metric_weights``),
``difix-make-pairs`` (``make_pairs``), ``difix-train`` (``train``); ``common`` holds their shared error reporting,
progress bars, model options and loading; ``tyro_style`` the one parsing helper. Library modules hold no ``main``.

Command-line style, one rule for every tool of the plugin: options are a tyro dataclass whose field docstrings are
the help. Tools without a reference command line use nerfstudio's hyphenated flags; a tool whose command line is
the Difix3D / NiFi reference scripts' keeps exactly their underscored flags (``--input_image``, ``--model_name``,
``--data_root``, ``--smoke_test``) through :func:`difix_ns.cli.tyro_style.parse` (``use_underscores=True``; the
README's commands are checked against the flags its ``--help`` lists), and the ``scripts/`` wrapper runs the same
``main``. The only configuration file is NiFi training's ``configs/default.yaml`` (``nifi-train --config``), read
with ``yaml.safe_load`` (:mod:`nifi_ns.training.config`).
"""

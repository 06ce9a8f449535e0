"""nerfstudio integration of NiFi: the ``nifi-splatfacto`` method (compression at the end of training) and the
ns-eval extension (compressed / restored metrics per rate).

Import-light: the method specification lives in ``method_configs`` (loaded through entry points); nothing here
imports diffusers, transformers or peft.
"""

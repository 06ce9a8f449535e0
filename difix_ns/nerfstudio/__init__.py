"""nerfstudio integration of Difix3D: the ``difix3d`` (nerfacto) and ``difix3d-splatfacto`` methods.

Import-light: the method specifications live in ``method_configs`` (loaded through entry points); nothing here
imports diffusers, transformers or peft.
"""

"""Which device the plugin's methods train on: CUDA when it exists, else the CPU, announced in one line.

nerfstudio's ``MachineConfig`` defaults to CUDA, so on a machine without one every ``ns-train`` dies in a CUDA
traceback unless ``--machine.device-type cpu`` is passed. The plugin's methods (``difix3d``, ``difix3d-splatfacto``,
``nifi-splatfacto``) default to the device that exists instead; stock nerfstudio methods still need the flag.
The device rule itself (CUDA when visible) is ``difix_ns.diffusion.device.default_device_type``, shared with the
fixers and the NiFi restorer; this module owns the nerfstudio side: the ``MachineConfig`` default and the CPU notice.
"""
from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig

from difix_ns.diffusion.device import default_device_type

__all__ = ["default_device_type", "auto_machine", "announce_device"]

_ANNOUNCED = False


def auto_machine() -> MachineConfig:
    """nerfstudio's ``MachineConfig`` with the device that exists (``--machine.device-type`` still overrides)."""
    return MachineConfig(device_type=default_device_type())


def announce_device(method: str, device) -> None:
    """One line when training runs on the CPU (once per process)."""
    global _ANNOUNCED
    if _ANNOUNCED or torch.device(device).type != "cpu":
        return
    _ANNOUNCED = True
    from nerfstudio.utils.rich_utils import CONSOLE

    reason = "no CUDA device found" if not torch.cuda.is_available() else "--machine.device-type cpu"
    CONSOLE.print(f"[bold yellow]{method}: training on the CPU ({reason}); expect minutes per 1000 steps on small "
                  "data, see docs/difix3d.md#cpu[/bold yellow]", highlight=False, soft_wrap=True)

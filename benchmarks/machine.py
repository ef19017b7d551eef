"""What every benchmark records about the machine and the moment it ran."""

from __future__ import annotations

__all__ = ["describe"]

import os
import platform
import time

import torch


def describe(load_before: tuple[float, float, float]) -> dict:
    """The load average before (given) and after (now), CPU, torch and date."""
    return {
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }

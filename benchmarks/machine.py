"""What every benchmark records about the machine and the moment it ran."""

from __future__ import annotations

__all__ = ["describe", "finish"]

import json
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


def finish(result: dict, load_before: tuple[float, float, float], **setup) -> dict:
    """Add the run's ``setup`` (with torch's threads and the machine) and print.

    ``result`` gets ``setup``: the given fields, ``torch_threads`` and
    :func:`describe`; it is printed as the benchmark's one JSON object and
    returned.
    """
    result["setup"] = {
        **setup,
        "torch_threads": torch.get_num_threads(),
        **describe(load_before),
    }
    print(json.dumps(result, indent=2, default=str))
    return result

"""What every benchmark prints first: the machine and the versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata


def machine() -> dict:
    """Platform, cores, Python/torch/ray/numpy versions and the 1-minute load average.

    Versions come from package metadata, so nothing heavy is imported (a torch-free benchmark
    stays torch-free).
    """
    info = {
        "machine": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    for name in ("torch", "ray", "numpy"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return info

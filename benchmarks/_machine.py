"""What every benchmark prints first: the machine and the versions."""

from __future__ import annotations

import os
import platform


def machine() -> dict:
    """Platform, cores, Python/torch/ray versions, and the 1-minute load average."""
    info = {
        "machine": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    for name in ("torch", "ray", "numpy"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            pass
    return info

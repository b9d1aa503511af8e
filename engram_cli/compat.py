"""Python-version and platform shims, in one place."""

import os
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["tomllib", "usable_cores"]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one, as
    under taskset or a container's cpuset), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)

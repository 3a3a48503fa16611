"""How many CPU threads torch uses, chosen once per command.

torch starts with one thread per core it sees. On a machine where other processes already keep
the cores busy, those threads compete with them and with each other: measured on 2 cores with one
other busy process, ``fpscf demo`` took 33 s with torch's default of 2 threads and 16 s with one.
The command line therefore picks the thread count at start (:func:`configure_threads`):

1. ``FPSCF_NUM_THREADS`` if set, else ``OMP_NUM_THREADS`` if set: that number, as given;
2. otherwise the cores this process may run on (``os.sched_getaffinity``) minus the cores other
   processes keep busy (the 1-minute load average, rounded), at least 1.

Python code that uses :class:`fpscf.FixedPointCalculator` directly keeps torch's own choice; call
``torch.set_num_threads(n)`` (or :func:`configure_threads`) there. In LAMMPS, threads per rank come
from ``OMP_NUM_THREADS`` and the total is ranks × threads (keep it at or below the cores).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count chosen for this process and why.

    Attributes:
        threads: torch intra-op threads.
        cores: CPU cores this process may run on.
        load: 1-minute load average when the choice was made (None where the OS has none).
        source: ``"FPSCF_NUM_THREADS"``, ``"OMP_NUM_THREADS"`` or ``"load"`` (idle cores).
    """

    threads: int
    cores: int
    load: float | None
    source: str

    def describe(self) -> str:
        """One line for logs: ``2 threads (2 cores, load 0.1; FPSCF_NUM_THREADS or OMP_NUM_THREADS to choose)``."""
        if self.source != "load":
            return f"{self.threads} thread{'s' * (self.threads != 1)} ({self.source}={self.threads}, {self.cores} cores)"
        load = "" if self.load is None else f", load {self.load:.1f}"
        return (f"{self.threads} thread{'s' * (self.threads != 1)} ({self.cores} cores{load}; "
                "set FPSCF_NUM_THREADS or OMP_NUM_THREADS to choose)")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _from_environment(name: str) -> int | None:
    """A positive integer from the environment variable ``name``; None if unset or not one (torch
    and OpenMP ignore such values too)."""
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def choose_threads(cores: int | None = None, load: float | None = None) -> ThreadChoice:
    """The thread count for this process (see the module docstring for the rule).

    Args:
        cores: CPU cores available (default: :func:`available_cores`).
        load: 1-minute load average (default: ``os.getloadavg()``; None where unavailable).
    """
    cores = available_cores() if cores is None else cores
    for name in ("FPSCF_NUM_THREADS", "OMP_NUM_THREADS"):
        threads = _from_environment(name)
        if threads is not None:
            return ThreadChoice(threads, cores, load, name)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = None
    busy = 0 if load is None else int(round(load))
    return ThreadChoice(max(1, min(cores, cores - busy)), cores, load, "load")


_CHOICE: ThreadChoice | None = None


def configure_threads() -> ThreadChoice:
    """Choose the thread count (:func:`choose_threads`) and set it in torch; once per process,
    later calls return the first choice."""
    global _CHOICE
    if _CHOICE is None:
        import torch

        _CHOICE = choose_threads()
        torch.set_num_threads(_CHOICE.threads)
    return _CHOICE


def thread_summary() -> str:
    """``"N threads"`` as torch runs now (for lines that print timings)."""
    import torch

    threads = torch.get_num_threads()
    return f"{threads} thread{'s' * (threads != 1)}"

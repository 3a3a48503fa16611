"""Parallel, resumable labelling of structures into an extended XYZ data set.

Layout of an output directory::

    out_dir/parts/000017.xyz   one labelled structure per finished sample_id (written atomically)
    out_dir/failed.json        structures whose labelling failed, with the error (atomically)
    out_dir/data.xyz           all parts in sample_id order (written at the end, atomically)
    out_dir/manifest.json      method, settings, seed, counts, command line, versions
    out_dir/structures.xyz     (``water_dataset`` only) the sampled, unlabelled structures
    out_dir/sampling.json      (``water_dataset`` only) the sampling parameters

A run that is killed loses only the structures being labelled at that moment; running it again
skips every structure that has a part file (after checking the part holds the same atoms) and
retries the failed ones. Workers are separate processes (``multiprocessing`` "spawn"), so scripts
that call :func:`generate_dataset` must guard their entry point with
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from fpscf.atomic_files import atomic_write
from fpscf.data.extxyz import read_extxyz, write_extxyz
from fpscf.errors import FpscfError
from fpscf.datagen.water import DATA_EXTRA_HINT

#: Labelling methods: PySCF DFT (``pyscf_labels.label_structure``), GFN2-xTB (``label_xtb``) or
#: Quantum ESPRESSO for periodic crystals (``qe_labels.label_structure``).
METHODS = ("dft", "xtb", "qe")
#: Environment variables that set the thread count of the numerical libraries in a worker.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: Positions of a part file must match the structure to this tolerance (Å; files keep 8 decimals).
_POSITION_TOLERANCE = 1e-6
_PART_NAME = re.compile(r"^(\d+)\.xyz$")


class DataGenerationError(FpscfError, RuntimeError):
    """The data set cannot be generated as asked (nothing labelled, a worker died, ...)."""


@dataclass(frozen=True)
class _Task:
    sample_id: int
    atoms: Atoms
    method: str
    response: bool
    settings: Any
    part_path: str


def generate_dataset(
    structures: Iterable[Atoms],
    out_dir: str | os.PathLike[str],
    *,
    method: str = "dft",
    workers: int = 1,
    threads_per_worker: int | None = None,
    response_fraction: float = 0.2,
    max_response_atoms: int = 10,
    settings: Any = None,
    seed: int = 0,
    progress: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Label structures in parallel worker processes and merge them into ``out_dir/data.xyz``.

    Each structure is labelled with ``fpscf.datagen.pyscf_labels.label_structure`` (method
    ``"dft"``; with ``response=True`` — polarizability and Born charges — for a seeded subset) or
    :func:`fpscf.datagen.water.label_xtb` (method ``"xtb"``, zero-field energy, forces, dipole and
    charges). A structure is identified by ``info["sample_id"]`` (a non-negative int; its position
    in ``structures`` if absent); the finished structure is written to
    ``out_dir/parts/{sample_id:06d}.xyz`` at once, so a crash loses no finished structure and a
    restart labels only the missing ones. A failure (SCF not converged, bad geometry, ...) is
    recorded in ``out_dir/failed.json`` (list of ``{"sample_id", "error", "traceback", "time"}``)
    and the run goes on; a restart retries it. At the end all parts of ``structures`` are merged in
    sample_id order into ``data.xyz`` and ``manifest.json`` is written (both atomically).

    Args:
        structures: the structures (positions Å; ``info["total_charge"]`` e and
            ``info["external_field"]`` V/Å are the labelling inputs).
        out_dir: output directory (created if needed; reused on restart).
        method: ``"dft"`` or ``"xtb"``. xTB labels are zero-field only: structures with a non-zero
            field are refused for ``"xtb"`` before anything runs.
        workers: number of worker processes ("spawn" context).
        threads_per_worker: OpenMP/MKL/OpenBLAS threads per worker; default
            ``max(1, os.cpu_count() // workers)``.
        response_fraction: probability, per structure, of also computing response labels
            (``"dft"`` only). The choice is seeded by ``seed`` and the sample_id alone, so it does
            not depend on the other structures of the run (restarts and extensions agree).
        max_response_atoms: only structures with at most this many atoms get response labels
            (each costs six more field SCFs with forces; large clusters would dominate the run).
        settings: ``pyscf_labels.DFTSettings`` (``"dft"``; default ``DFTSettings()``); must be None
            for ``"xtb"``.
        seed: seed of the response subset.
        progress: print one line per finished structure to stderr (done/total, rate, ETA).
        metadata: extra JSON-serialisable entries for the manifest (e.g. sampling parameters).

    Returns:
        The path of ``data.xyz``.

    Raises:
        ValueError: bad arguments, duplicate sample ids, xTB with a field, or a part file in
            ``out_dir`` that holds a different structure than the one with its sample_id.
        ImportError: pyscf (``"dft"``) or tblite (``"xtb"``) is missing (message says how to
            install the ``data`` extra).
        DataGenerationError: no structure could be labelled, or a worker process died (the
            finished parts are kept; run again to resume).
    """
    if method not in METHODS:
        raise ValueError(f"method = {method!r}: expected one of {METHODS}.")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers = {workers!r}: expected an integer >= 1.")
    if threads_per_worker is None:
        threads_per_worker = max(1, (os.cpu_count() or 1) // workers)
    if not isinstance(threads_per_worker, (int, np.integer)) or threads_per_worker < 1:
        raise ValueError(f"threads_per_worker = {threads_per_worker!r}: expected an integer >= 1.")
    if not 0.0 <= response_fraction <= 1.0:
        raise ValueError(f"response_fraction = {response_fraction!r}: expected a fraction in [0, 1].")
    if not isinstance(max_response_atoms, (int, np.integer)) or max_response_atoms < 1:
        raise ValueError(f"max_response_atoms = {max_response_atoms!r}: expected an integer >= 1.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed = {seed!r}: expected a non-negative integer.")
    settings = _resolve_settings(method, settings)
    by_id = _index_structures(structures)
    if method == "xtb":
        _refuse_fields_for_xtb(by_id)

    out_dir = Path(out_dir)
    parts_dir = out_dir / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    done = _finished_parts(parts_dir, by_id)
    failures = _load_failures(out_dir / "failed.json")
    for sample_id in list(failures):
        if sample_id in done or sample_id not in by_id:
            del failures[sample_id]
    todo = [i for i in sorted(by_id) if i not in done]
    reused = len(done)
    if progress:
        _log(f"{len(by_id)} structures, {reused} already labelled in {parts_dir}, {len(todo)} to "
             f"label with {method} ({workers} worker(s) x {threads_per_worker} thread(s))")

    tasks = [
        _Task(i, by_id[i], method,
              method in ("dft", "qe") and len(by_id[i]) <= max_response_atoms and _wants_response(seed, i, response_fraction),
              settings, str(_part_path(parts_dir, i)))
        for i in todo
    ]
    computed = _run(tasks, workers, threads_per_worker, failures, out_dir, progress, len(by_id),
                    reused)
    _write_json_atomic(out_dir / "failed.json", _failure_list(failures))

    finished = sorted(i for i in by_id if _part_path(parts_dir, i).is_file())
    frames = [atoms for i in finished for atoms in read_extxyz(_part_path(parts_dir, i))]
    data_path = out_dir / "data.xyz"
    if frames:
        write_extxyz(data_path, frames)
    manifest = _manifest(
        method, settings, seed, response_fraction, workers, threads_per_worker, by_id, frames,
        failures, computed, reused, metadata,
    )
    _write_json_atomic(out_dir / "manifest.json", manifest)
    if progress:
        _log(f"labelled {len(frames)}/{len(by_id)} structures ({computed} this run, {len(failures)} "
             f"failed{', see ' + str(out_dir / 'failed.json') if failures else ''})"
             f"{'; wrote ' + str(data_path) if frames else ''}")
    if not frames:
        raise DataGenerationError(
            f"no structure could be labelled; the errors are in {out_dir / 'failed.json'}."
        )
    return data_path


def water_dataset(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    *,
    method: str = "dft",
    workers: int = 1,
    threads_per_worker: int | None = None,
    response_fraction: float = 0.2,
    max_response_atoms: int = 10,
    settings: Any = None,
    progress: bool = True,
    **sampling: Any,
) -> Path:
    """Sample water structures and label them: what ``fpscf data water`` runs.

    The structures come from :func:`fpscf.datagen.water.sample_water_structures` (``n``, ``seed``
    and the keyword arguments ``sampling``; for ``method="xtb"`` the default ``field_fraction`` is
    0 because xTB labels are zero-field only). They are saved to ``out_dir/structures.xyz`` with
    their parameters in ``out_dir/sampling.json``, and reused on a restart with the same
    parameters, so a resumed run labels exactly the structures of the first one. Then
    :func:`generate_dataset` labels them (same ``seed`` for the response subset).

    Returns:
        The path of ``out_dir/data.xyz``.
    """
    from fpscf.datagen.water import sample_water_structures

    return _label_sampled(
        out_dir, sample_water_structures, "water", n, seed, sampling, method=method, workers=workers,
        threads_per_worker=threads_per_worker, response_fraction=response_fraction,
        max_response_atoms=max_response_atoms, settings=settings, progress=progress,
    )


def crystal_dataset(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    *,
    workers: int = 1,
    threads_per_worker: int | None = None,
    response_fraction: float = 0.3,
    max_response_atoms: int = 16,
    settings: Any = None,
    progress: bool = True,
    **sampling: Any,
) -> Path:
    """Sample rattled and strained crystal cells and label them with Quantum ESPRESSO: what
    ``fpscf data crystal`` runs. Structures come from
    :func:`fpscf.datagen.crystal.sample_crystal_structures` (``n``, ``seed``, ``sampling``) and are
    kept in ``out_dir/structures.xyz`` like :func:`water_dataset`'s; a seeded ``response_fraction``
    also gets ε∞, Born charges and Raman tensors from ph.x. Returns ``out_dir/data.xyz``."""
    from fpscf.datagen.crystal import sample_crystal_structures

    return _label_sampled(
        out_dir, sample_crystal_structures, "crystal", n, seed, sampling, method="qe", workers=workers,
        threads_per_worker=threads_per_worker, response_fraction=response_fraction,
        max_response_atoms=max_response_atoms, settings=settings, progress=progress,
    )


def liquid_dataset(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    *,
    method: str = "dft",
    workers: int = 1,
    threads_per_worker: int | None = None,
    response_fraction: float = 0.0,
    max_response_atoms: int = 10,
    settings: Any = None,
    progress: bool = True,
    **sampling: Any,
) -> Path:
    """Cut clusters from GFN2-xTB liquid-water boxes and label them: what ``fpscf data liquid``
    runs. Structures come from :func:`fpscf.datagen.liquid.sample_liquid_clusters` (``n``,
    ``seed``, ``sampling``; for ``method="xtb"`` the default ``field_fraction`` is 0) and are kept
    in ``out_dir/structures.xyz`` like :func:`water_dataset`'s (the MD runs again only if the
    sampling parameters change; each box's snapshots are kept in ``out_dir/boxes/``, so an
    interrupted sampling resumes box by box); the MD's progress lines go to stderr with ``progress``.
    Returns ``out_dir/data.xyz``."""
    from fpscf.datagen.liquid import sample_liquid_clusters

    def sample(*args: Any, **kwargs: Any) -> Any:
        # each box's MD is kept in out_dir/boxes, so an interrupted sampling resumes box by box
        with _logger_to_stderr("fpscf.datagen.liquid", progress):
            return sample_liquid_clusters(*args, cache_dir=Path(out_dir) / "boxes", **kwargs)

    return _label_sampled(
        out_dir, sample, "liquid_clusters", n, seed, sampling, method=method, workers=workers,
        threads_per_worker=threads_per_worker, response_fraction=response_fraction,
        max_response_atoms=max_response_atoms, settings=settings, progress=progress,
    )


def close_contact_dataset(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    *,
    method: str = "dft",
    workers: int = 1,
    threads_per_worker: int | None = None,
    response_fraction: float = 0.1,
    max_response_atoms: int = 6,
    settings: Any = None,
    progress: bool = True,
    **sampling: Any,
) -> Path:
    """Sample close-contact scans and label them: what ``fpscf data close-contacts`` runs.
    Structures come from :func:`fpscf.datagen.close_contacts.sample_close_contacts` (``n``,
    ``seed``, ``sampling``; for ``method="xtb"`` the default ``field_fraction`` is 0) and are kept
    in ``out_dir/structures.xyz`` like :func:`water_dataset`'s. Returns ``out_dir/data.xyz``."""
    from fpscf.datagen.close_contacts import sample_close_contacts

    return _label_sampled(
        out_dir, sample_close_contacts, "close_contacts", n, seed, sampling, method=method, workers=workers,
        threads_per_worker=threads_per_worker, response_fraction=response_fraction,
        max_response_atoms=max_response_atoms, settings=settings, progress=progress,
    )


def _label_sampled(
    out_dir: str | os.PathLike[str], sampler: Any, kind: str, n: int, seed: int, sampling: dict[str, Any], *,
    method: str, progress: bool, **labelling: Any,
) -> Path:
    """Sample (or reuse) ``out_dir/structures.xyz`` with ``sampler`` and label it with
    :func:`generate_dataset`; xTB labels are zero-field, so for ``method="xtb"`` the default
    ``field_fraction`` is 0. ``kind`` names the structures in the manifest."""
    if method == "xtb":
        sampling.setdefault("field_fraction", 0.0)
    structures, parameters = _sampled_structures(Path(out_dir), sampler, n, seed, sampling, progress)
    return generate_dataset(
        structures, out_dir, method=method, seed=seed, progress=progress,
        metadata={"structures": kind, "sampling": parameters}, **labelling,
    )


@contextmanager
def _logger_to_stderr(name: str, enabled: bool):
    """While active, INFO messages of logger ``name`` go to stderr (one plain line each)."""
    import logging

    logger = logging.getLogger(name)
    if not enabled:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _sampled_structures(
    out_dir: Path, sample: Any, n: int, seed: int, sampling: dict[str, Any], progress: bool
) -> tuple[list[Atoms], dict[str, Any]]:
    """The structures ``sample(n, seed, **sampling)``, saved to ``out_dir/structures.xyz`` with their
    parameters in ``out_dir/sampling.json`` and reused on a restart with the same parameters, so a
    resumed run labels exactly the structures of the first one."""
    parameters = json.loads(json.dumps({"n": n, "seed": seed, **sampling}, default=list))
    structures_path, sampling_path = out_dir / "structures.xyz", out_dir / "sampling.json"
    if structures_path.is_file() and sampling_path.is_file() and json.loads(sampling_path.read_text()) == parameters:
        structures = read_extxyz(structures_path) if n > 0 else []
        if progress:
            _log(f"reusing {len(structures)} sampled structures from {structures_path}")
        return structures, parameters
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    structures = sample(n, seed, **sampling)
    if progress:
        _log(f"sampled {len(structures)} structures in {time.perf_counter() - start:.1f} s")
    sampling_path.unlink(missing_ok=True)  # never pair new structures with old parameters
    if structures:
        write_extxyz(structures_path, structures)
        # label what the file holds (8 decimals), so a resumed run labels identical inputs
        structures = read_extxyz(structures_path)
    _write_json_atomic(sampling_path, parameters)
    return structures, parameters


# --------------------------------------------------------------------------------------------
# Inputs and resumption
# --------------------------------------------------------------------------------------------


def require_labeller(method: str) -> None:
    """Raise an ImportError (FileNotFoundError for Quantum ESPRESSO's programs) with the install
    hint if the code behind ``method`` is missing."""
    if method == "qe":
        from fpscf.datagen.qe_labels import require_quantum_espresso

        require_quantum_espresso()
        return
    module = {"dft": "pyscf", "xtb": "tblite"}[method]
    try:
        __import__(module)
    except ImportError as error:
        raise ImportError(f"method '{method}' needs {module}, which is not installed ({error}); "
                          f"{DATA_EXTRA_HINT}") from error


def _resolve_settings(method: str, settings: Any) -> Any:
    require_labeller(method)
    if method == "qe":
        from fpscf.datagen.qe_labels import QESettings

        if settings is None:
            return QESettings()
        if not isinstance(settings, QESettings):
            raise ValueError(f"settings = {settings!r}: expected a fpscf.datagen.qe_labels.QESettings.")
        return settings
    if method == "xtb":
        if settings is not None:
            raise ValueError("settings are for method 'dft' (DFTSettings); method 'xtb' takes none.")
        return None
    from fpscf.datagen.pyscf_labels import DFTSettings

    if settings is None:
        return DFTSettings()
    if not isinstance(settings, DFTSettings):
        raise ValueError(f"settings = {settings!r}: expected a fpscf.datagen.pyscf_labels.DFTSettings.")
    return settings


def _index_structures(structures: Iterable[Atoms]) -> dict[int, Atoms]:
    by_id: dict[int, Atoms] = {}
    for position, atoms in enumerate(structures):
        if not isinstance(atoms, Atoms):
            raise ValueError(f"structure {position} is a {type(atoms).__name__}, expected ase.Atoms.")
        raw = atoms.info.get("sample_id", position)
        if not isinstance(raw, (int, np.integer)) or isinstance(raw, bool) or raw < 0:
            raise ValueError(f"structure {position}: info['sample_id'] = {raw!r}, expected an "
                             "integer >= 0.")
        sample_id = int(raw)
        if sample_id in by_id:
            raise ValueError(f"structure {position}: sample_id {sample_id} occurs twice; every "
                             "structure needs its own info['sample_id'].")
        atoms = atoms.copy()
        atoms.calc = None
        atoms.info["sample_id"] = sample_id
        by_id[sample_id] = atoms
    if not by_id:
        raise ValueError("generate_dataset: no structures given.")
    return by_id


def _refuse_fields_for_xtb(by_id: dict[int, Atoms]) -> None:
    with_field = [
        i for i, atoms in by_id.items()
        if np.any(np.asarray(atoms.info.get("external_field", np.zeros(3)), dtype=float) != 0)
    ]
    if with_field:
        shown = ", ".join(str(i) for i in with_field[:10]) + (", ..." if len(with_field) > 10 else "")
        raise ValueError(
            f"xTB labels are zero-field only, but {len(with_field)} structure(s) have a "
            f"non-zero external_field (sample ids {shown}). Sample them with field_fraction=0 or "
            "label them with method 'dft'."
        )


def _part_path(parts_dir: Path, sample_id: int) -> Path:
    return parts_dir / f"{sample_id:06d}.xyz"


def _finished_parts(parts_dir: Path, by_id: dict[int, Atoms]) -> set[int]:
    """Sample ids with a part file; each part is checked to hold the same atoms as the structure."""
    done = set()
    for path in sorted(parts_dir.iterdir()):
        match = _PART_NAME.match(path.name)
        if not match or int(match.group(1)) not in by_id:
            continue
        sample_id = int(match.group(1))
        expected = by_id[sample_id]
        (part,) = read_extxyz(path)
        same = (
            len(part) == len(expected)
            and np.array_equal(part.numbers, expected.numbers)
            and np.allclose(part.positions, expected.positions, atol=_POSITION_TOLERANCE, rtol=0)
        )
        if not same:
            raise ValueError(
                f"{path} holds a different structure than sample_id {sample_id} of this run (other "
                "atoms or positions): the output directory belongs to another data set. Use a new "
                "output directory, or delete the parts to relabel."
            )
        done.add(sample_id)
    return done


def _wants_response(seed: int, sample_id: int, fraction: float) -> bool:
    """Seeded per-structure choice of the response subset."""
    return bool(np.random.default_rng([seed, sample_id]).random() < fraction)


def _load_failures(path: Path) -> dict[int, dict[str, Any]]:
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())
        return {int(entry["sample_id"]): entry for entry in entries}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a failure list written by fpscf ({error}); delete it.") from None


def _failure_list(failures: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    return [failures[i] for i in sorted(failures)]


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------


def _run(
    tasks: list[_Task], workers: int, threads: int, failures: dict[int, dict[str, Any]],
    out_dir: Path, progress: bool, total: int, reused: int,
) -> int:
    """Label ``tasks`` in worker processes; update ``failures``; return how many were computed."""
    if not tasks:
        return 0
    import multiprocessing

    start = time.perf_counter()
    finished = 0
    pending_tasks = list(reversed(tasks))
    context = multiprocessing.get_context("spawn")
    with _thread_environment(threads), ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=context,
        initializer=_init_worker, initargs=(threads,),
    ) as executor:
        running = {}
        try:
            while pending_tasks or running:
                # keep at most 2 tasks per worker queued, so an interrupt leaves little to cancel
                while pending_tasks and len(running) < 2 * workers:
                    task = pending_tasks.pop()
                    running[executor.submit(_label_one, task)] = task
                completed, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in completed:
                    task = running.pop(future)
                    sample_id, error, seconds = future.result()
                    finished += 1
                    if error is None:
                        failures.pop(sample_id, None)
                    else:
                        failures[sample_id] = error
                    _write_json_atomic(out_dir / "failed.json", _failure_list(failures))
                    if progress:
                        _report(task, error, seconds, finished, len(tasks), reused, total, start)
        except BrokenProcessPool as error:
            raise DataGenerationError(
                f"a worker process died ({error}; out of memory?) while labelling sample ids "
                f"{sorted(t.sample_id for t in running.values())}. Finished structures are kept in "
                f"{out_dir / 'parts'}; run again to resume."
            ) from error
        except BaseException:
            for future in running:
                future.cancel()
            raise
    return finished


def _label_one(task: _Task) -> tuple[int, dict[str, Any] | None, float]:
    """Worker: label one structure and write its part file; errors are returned, not raised."""
    with _BUSY:
        return _label_and_write(task)


def _label_and_write(task: _Task) -> tuple[int, dict[str, Any] | None, float]:
    start = time.perf_counter()
    try:
        if task.method == "dft":
            from fpscf.datagen.pyscf_labels import label_structure

            labelled = label_structure(task.atoms, task.settings, task.response)
        elif task.method == "qe":
            from fpscf.datagen.qe_labels import label_structure as label_crystal

            work = Path(task.part_path).parent.parent / "work"
            work.mkdir(exist_ok=True)
            labelled = label_crystal(task.atoms, task.settings, task.response, workdir=str(work))
        else:
            from fpscf.datagen.water import label_xtb

            labelled = label_xtb(task.atoms)
        labelled.info["sample_id"] = task.sample_id
        for key in ("total_charge", "external_field"):
            if key in task.atoms.info:
                labelled.info.setdefault(key, task.atoms.info[key])
        write_extxyz(task.part_path, labelled)
    except Exception as error:  # any labelling failure is recorded and the run goes on
        entry = {
            "sample_id": task.sample_id,
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return task.sample_id, entry, time.perf_counter() - start
    return task.sample_id, None, time.perf_counter() - start


# Held by a worker while it labels a structure (see _exit_when_orphaned).
_BUSY = threading.Lock()


def _init_worker(threads: int) -> None:
    """Worker start: thread counts for OpenMP/BLAS (also inherited from the parent's environment)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    """If the parent process dies (killed), finish the structure in hand, then exit.

    A worker blocked on the task queue never sees the parent go, so it would stay forever.
    """
    while True:
        time.sleep(2.0)
        if os.getppid() != parent:
            with _BUSY:  # waits for the current structure's part file to be written
                os._exit(0)


@contextmanager
def _thread_environment(threads: int):
    """Set the thread variables while workers are spawned (they read them when libraries load)."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _report(task: _Task, error: dict[str, Any] | None, seconds: float, finished: int, todo: int,
            reused: int, total: int, start: float) -> None:
    elapsed = time.perf_counter() - start
    rate = finished / elapsed if elapsed > 0 else math.inf
    eta = (todo - finished) / rate if rate > 0 else math.inf
    status = "ok" if error is None else f"FAILED ({error['error'].splitlines()[0][:120]})"
    extra = " +response" if task.response else ""
    _log(f"[{reused + finished:>{len(str(total))}}/{total}] sample {task.sample_id:06d} "
         f"({len(task.atoms)} atoms{extra}) {status} in {seconds:.1f} s | "
         f"{rate * 60:.2f}/min | ETA {_duration(eta)}")


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _manifest(
    method, settings, seed, response_fraction, workers, threads, by_id, frames, failures,
    computed, reused, metadata,
) -> dict[str, Any]:
    import fpscf

    return {
        "method": method,
        "level_of_theory": (
            getattr(settings, "level_of_theory", None) if settings is not None else "GFN2-xTB"
        ),
        "settings": dataclasses.asdict(settings) if settings is not None else None,
        "seed": seed,
        "response_fraction": response_fraction,
        "counts": {
            "structures": len(by_id),
            "labelled": len(frames),
            "failed": len(failures),
            "with_response": sum("polarizability" in _all_keys(a) for a in frames),
            "with_field": sum(
                bool(np.any(np.asarray(a.info.get("external_field", 0.0), dtype=float) != 0))
                for a in frames
            ),
            "computed_this_run": computed,
            "reused": reused,
        },
        "failed_sample_ids": sorted(failures),
        "workers": workers,
        "threads_per_worker": threads,
        "data": "data.xyz" if frames else None,
        "command_line": list(sys.argv),
        "fpscf_version": fpscf.__version__,
        "package_versions": _versions(("ase", "numpy", "pyscf", "pyscf-properties", "tblite")),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metadata": dict(metadata) if metadata else {},
    }


def _all_keys(atoms: Atoms) -> set[str]:
    keys = set(atoms.info) | set(atoms.arrays)
    if atoms.calc is not None:
        keys |= set(atoms.calc.results)
    return keys


def _versions(names: Iterable[str]) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to a temporary file in the same directory, then ``os.replace`` it."""
    text = json.dumps(value, indent=2, default=_json_default) + "\n"
    atomic_write(path, lambda stream: stream.write(text.encode("utf-8")), make_parents=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


__all__ = [
    "METHODS", "DataGenerationError", "close_contact_dataset", "generate_dataset", "liquid_dataset",
    "require_labeller", "water_dataset",
]

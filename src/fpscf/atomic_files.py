"""Atomic file writes: a reader never sees a half-written file, and a writer that fails leaves
the old file as it was (temporary file in the same directory, fsync, then ``os.replace``).
Every file fpscf writes (models, data sets, checkpoints, metrics, plots) goes through here."""

from __future__ import annotations

import functools
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


TEMPORARY_SUFFIX = ".tmp"
#: ``.<name>.<pid>.<random>.tmp``: the temporaries of :func:`atomic_path` (pid of the writer).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries that a killed writer (SIGKILL, power loss) left in ``directory``:
    those of :func:`atomic_path` whose writing process no longer runs. Returns what was removed."""
    removed: list[Path] = []
    folder = Path(directory)
    if not folder.is_dir():
        return removed
    for path in folder.glob(f".*{TEMPORARY_SUFFIX}"):
        match = _TEMPORARY.match(path.name)
        if match is None or _process_alive(int(match["pid"])):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@functools.cache
def _new_file_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give a new file (0o666 minus the umask)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None], make_parents: bool = False) -> None:
    """Call ``write(stream)`` on a temporary file next to ``path``, then move it onto ``path``.

    If ``write`` (or anything before the move) raises, the temporary file is removed and an
    existing ``path`` keeps its old content. The new file gets the permissions of the file it
    replaces, or the usual umask-based ones (``mkstemp`` alone would give 0o600).
    """
    with atomic_path(path, make_parents) as temporary:
        with open(temporary, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike[str], make_parents: bool = False) -> Iterator[Path]:
    """A temporary path next to ``path`` for libraries that write by file name (safetensors);
    moved onto ``path`` when the block ends without an exception, removed otherwise."""
    target = Path(path)
    directory = target.parent
    if make_parents:
        directory.mkdir(parents=True, exist_ok=True)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(target)!r}: directory {str(directory)!r} does not exist; "
            "create it first (e.g. Path(...).mkdir(parents=True))"
        )
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = _new_file_mode()
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.{os.getpid()}.", suffix=TEMPORARY_SUFFIX)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file next to it, then ``os.replace``).

    Raises:
        FileNotFoundError: the directory of ``path`` does not exist.
    """
    payload = bytes(data)
    atomic_write(path, lambda stream: stream.write(payload))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically as UTF-8, byte for byte (no newline translation).

    Raises:
        FileNotFoundError: the directory of ``path`` does not exist.
        UnicodeEncodeError: ``text`` cannot be encoded (e.g. a lone surrogate); ``path`` is
            left as it was.
    """
    if not isinstance(text, str):
        raise TypeError(
            f"atomic_write_text expects str, got {type(text).__name__}; "
            "use atomic_write_bytes for bytes"
        )
    atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))



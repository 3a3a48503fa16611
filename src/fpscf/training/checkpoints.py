"""Training checkpoints: written atomically with the config of the run, read weights-only, and
resumed only with the config they were trained with (or explicitly accepted changes).

``checkpoint.pt`` holds plain tensors and numbers (``weights_only=True``: loading never runs code)
and, as JSON text, the config it was trained with. On ``--resume`` the current config is compared
with it (checkpoints from before that: with ``output_dir/config.yaml``):

- :data:`FIXED_KEYS` (architecture, data, seed, batching, dtype, optimizer kind) cannot change
  within a run: a :class:`~fpscf.errors.CheckpointError` lists the changes and says to start a new
  ``output_dir``.
- other changes (learning rates, loss weights, stage ends, weight decay, ...) are refused with the
  list of changes unless accepted (``fpscf train --resume --accept-changes``); accepted, the new
  config replaces ``config.yaml`` and the old one is kept as ``config.before_epoch<N>.yaml``.
- :data:`FREE_KEYS` (output, progress, plots) may change silently.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path
from typing import Any

import torch
import yaml

from fpscf.atomic_files import atomic_write_bytes, atomic_write_text
from fpscf.errors import CheckpointError

#: Config keys (dotted prefixes) that a resumed run cannot change.
FIXED_KEYS: tuple[str, ...] = (
    "model", "valid_fraction", "key_map", "seed", "batch_size", "default_dtype",
    "atomic_numbers", "optimizer.name", "optimizer.betas", "optimizer.eps", "optimizer.amsgrad",
    "time_reversal_augmentation", "finetune",
)
#: Config keys that may change on resume without a word.
FREE_KEYS: tuple[str, ...] = (
    "output_dir", "progress", "plot", "device", "checkpoint_every", "valid_batch_size", "num_workers",
)
#: Entries every checkpoint holds.
STATE_KEYS: tuple[str, ...] = ("model", "optimizer", "epoch", "best", "metrics")


def save_checkpoint(path: Path, state: dict[str, Any], config: dict[str, Any]) -> None:
    """Write ``state`` (:data:`STATE_KEYS`) and the run's ``config`` (as JSON text) atomically."""
    buffer = io.BytesIO()
    torch.save({**state, "config": json.dumps(_plain(config))}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, device: Any) -> dict[str, Any]:
    """The checkpoint at ``path``, weights-only; :class:`CheckpointError` for a truncated, corrupt
    or unsafe (not weights-only) file."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} is not a weights-only fpscf checkpoint (it holds Python objects, and loading it could run "
            "code); it was not loaded. Start without --resume, in a new output_dir"
        ) from None
    except Exception as error:  # torch raises RuntimeError, OSError, EOFError, ... for damaged files
        raise CheckpointError(
            f"{path} is truncated or corrupt ({type(error).__name__}); it was not loaded. Restore it from a backup, "
            "or start again without --resume in a new output_dir"
        ) from None
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"{path} is not an fpscf training checkpoint (missing {missing}); start without --resume")
    return state


def check_resume_config(
    state: dict[str, Any], config: dict[str, Any], output_dir: Path, accept_changes: bool, epoch: int,
    write: bool = True,
) -> list[str]:
    """Compare ``config`` with the one the checkpoint ``state`` was trained with (module docstring).
    Returns the accepted changes (``"key: old -> new"``), after updating ``config.yaml`` (if
    ``write``: the training rank that writes files); raises :class:`CheckpointError` for changes
    that are fixed or not accepted."""
    if "config" in state:
        saved = json.loads(state["config"])
    elif (output_dir / "config.yaml").is_file():
        saved = yaml.safe_load((output_dir / "config.yaml").read_text())
    else:
        return []
    old, new = _flatten(_plain(saved)), _flatten(_plain(config))
    changes = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    changes = [key for key in changes if not _under(key, FREE_KEYS)]
    lines = [f"{key}: {old.get(key, '(absent)')!r} -> {new.get(key, '(absent)')!r}" for key in changes]
    fixed = [line for key, line in zip(changes, lines) if _under(key, FIXED_KEYS)]
    if fixed:
        raise CheckpointError(
            f"--resume: the config changes what the run in {output_dir} was trained with: {'; '.join(fixed)}. "
            "These cannot change within a run: resume with the config the run was started with "
            f"({output_dir / 'config.yaml'}), or start a new output_dir"
        )
    if lines and not accept_changes:
        raise CheckpointError(
            f"--resume: the config differs from the run in {output_dir}: {'; '.join(lines)}. To continue with these "
            "changes add --accept-changes (config.yaml is then updated, the old one kept); to continue as before use "
            f"{output_dir / 'config.yaml'}"
        )
    if lines and write:
        previous = output_dir / "config.yaml"
        if previous.is_file():
            atomic_write_text(output_dir / f"config.before_epoch{epoch}.yaml", previous.read_text())
        atomic_write_text(previous, yaml.safe_dump(_plain(config), sort_keys=False))
    return lines


def resume_from(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: dict[str, Any], accept_changes: bool,
    write: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """Load the checkpoint ``path`` into ``model`` and ``optimizer`` after checking ``config``
    against it (:func:`check_resume_config`; ``write``: update ``config.yaml`` for accepted
    changes). Returns the state and the accepted config changes. The checkpoint does not depend
    on the number of training ranks: a run may resume on another."""
    parameter = next(model.parameters(), None)
    state = load_checkpoint(path, parameter.device if parameter is not None else "cpu")
    accepted = check_resume_config(state, config, path.parent, accept_changes, int(state["epoch"]) + 1, write=write)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path} does not fit the model of this config ({str(error).splitlines()[0]}); "
                              "start a new output_dir") from None
    return state, accepted


def _plain(data: Any) -> Any:
    """JSON-normalised copy (string keys, lists for tuples)."""
    return json.loads(json.dumps(data, default=str))


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    if not data and prefix:
        flat[prefix] = {}
    return flat


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


__all__ = ["FIXED_KEYS", "FREE_KEYS", "check_resume_config", "load_checkpoint", "resume_from", "save_checkpoint"]

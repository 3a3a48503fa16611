"""Integrity checks of model files, run by :mod:`fpscf.model_io` before a model is built.

- :func:`check_header`: every size-like hyperparameter within :data:`HEADER_BOUNDS`, checked on
  the plain JSON header before anything is allocated (a header with ``num_channels = 1e9`` would
  otherwise tie up many GB for minutes).
- :func:`weights_digest`: SHA-256 of the tensors (names, dtypes, shapes, bytes, sorted by name),
  recorded as ``weights_sha256`` in the header by ``save_model``.
- :func:`check_weights`: the tensors match that digest (a flipped byte is corruption) and are finite.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Mapping

import torch

from fpscf.errors import ModelFileError

#: Inclusive (low, high) bounds of header hyperparameters. Generous: the largest models fpscf builds
#: use tens of channels and l <= 3; beyond these a header is corrupt or hostile, not a model.
HEADER_BOUNDS: dict[str, tuple[float, float]] = {
    "r_max": (0.1, 50.0),
    "num_channels": (1, 1024),
    "max_L": (0, 6),
    "num_interactions": (1, 16),
    "num_bessel": (1, 256),
    "correlation": (1, 6),
    "sh_max_l": (0, 8),
    "radial_mlp_hidden": (1, 4096),
    "atomic_multipoles_max_l": (0, 4),
    "field_feature_max_l": (0, 4),
    "avg_num_neighbors": (1e-6, 1e6),
}
#: At most this many species and field-feature widths.
MAX_LIST_LENGTH = 128


def check_header(header: Mapping[str, Any], path: str | Path) -> None:
    """Raise :class:`ModelFileError` unless the hyperparameters of ``header`` lie within
    :data:`HEADER_BOUNDS` (``path`` names the file in the message)."""
    hyper = header.get("hyperparameters")
    if not isinstance(hyper, dict):
        raise ModelFileError(f"{str(path)!r} has a header without hyperparameters; the file is damaged")
    for name, (low, high) in HEADER_BOUNDS.items():
        if name not in hyper:
            continue
        value = hyper[name]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not low <= value <= high:
            raise ModelFileError(
                f"{str(path)!r} has hyperparameter {name} = {value!r}, outside the sane range [{low:g}, {high:g}]; "
                f"the header is corrupt (written by fpscf {header.get('fpscf_version', '?')}), nothing was loaded"
            )
    for name in ("atomic_numbers", "field_feature_widths"):
        value = hyper.get(name)
        if value is not None and (not isinstance(value, list) or len(value) > MAX_LIST_LENGTH):
            raise ModelFileError(f"{str(path)!r} has a malformed {name} in its header (a list of at most "
                                 f"{MAX_LIST_LENGTH} numbers expected); the header is corrupt")
    if any(not isinstance(z, int) or not 1 <= z <= 118 for z in hyper.get("atomic_numbers") or []):
        raise ModelFileError(f"{str(path)!r} has atomic numbers outside 1..118 in its header; the header is corrupt")


def update_digest(digest: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Feed ``tensors`` (sorted by name: name, dtype, shape, bytes) into the hashlib object ``digest``."""
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest


def weights_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of the tensors of a model file."""
    return update_digest(hashlib.sha256(), tensors).hexdigest()


def check_weights(tensors: Mapping[str, torch.Tensor], where: str, expected: str | None = None) -> None:
    """Raise :class:`ModelFileError` if ``tensors`` do not match the digest ``expected`` (None: not
    recorded, older files) or hold a non-finite floating-point value. ``where`` names the file."""
    if expected is not None and weights_digest(tensors) != expected:
        raise ModelFileError(
            f"{where}: the weights do not match the digest recorded in the header (weights_sha256): the file "
            "is corrupt or was modified after it was written; copy it again, or re-export it from the training run"
        )
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelFileError(
                f"{where}: weight {name} holds {bad} non-finite value(s) (nan or inf); the model is broken "
                "(a diverged training run or a damaged file); use an earlier checkpoint or model file"
            )


__all__ = ["HEADER_BOUNDS", "check_header", "check_weights", "update_digest", "weights_digest"]

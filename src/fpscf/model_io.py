"""Model files: safetensors weights plus a plain-data JSON header. Loading never runs code.

The header (in the safetensors metadata) records the format, the package version, units, the
species and every hyperparameter, so ``load_model`` rebuilds the architecture from data alone,
and, for models that carry one, the training domain (:class:`fpscf.domain.TrainingDomain`: the
ranges of the training data the calculators check structures against). Files without it load
with ``model.training_domain = None``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from fpscf.atomic_files import atomic_path

FORMAT_NAME = "fpscf-model"
FORMAT_VERSION = 1
UNITS = {"length": "Angstrom", "energy": "eV", "charge": "e", "electric_field": "V/Angstrom", "magnetic_field": "T"}


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` atomically (temporary file + rename)."""
    from safetensors.torch import save_file

    from fpscf import __version__

    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "fpscf_version": __version__,
        "units": UNITS,
        "species": list(model.config.atomic_numbers),
        "hyperparameters": model.config.to_dict(),
    }
    domain = getattr(model, "training_domain", None)
    if domain is not None:
        header["training_domain"] = domain.to_dict()
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path, make_parents=True) as temporary:
        save_file(tensors, str(temporary), metadata={"fpscf": json.dumps(header)})


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The plain-data header of a model file; a clear error for missing, corrupt or foreign files."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for bad files
        raise ValueError(
            f"{str(path)!r} is not a readable fpscf model file (expected safetensors written by "
            f"model.save): {error}"
        ) from None
    if "fpscf" not in metadata:
        raise ValueError(f"{str(path)!r} is a safetensors file but not an fpscf model (no 'fpscf' header)")
    header = json.loads(metadata["fpscf"])
    if header.get("format") != FORMAT_NAME or int(header.get("format_version", -1)) > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has model format {header.get('format')!r} v{header.get('format_version')}; "
            f"this fpscf reads {FORMAT_NAME!r} up to v{FORMAT_VERSION} (upgrade fpscf)"
        )
    return header


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64) -> Any:
    """Rebuild a :class:`~fpscf.model.FixedPointModel` from a file written by ``model.save``,
    with its training domain as ``model.training_domain`` (None if the file has none)."""
    from safetensors.torch import load_file

    from fpscf.config import ModelConfig
    from fpscf.domain import TrainingDomain
    from fpscf.model import FixedPointModel

    header = read_header(path)
    config = ModelConfig.from_dict(header["hyperparameters"])
    model = FixedPointModel(config)
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{str(path)!r} does not match the architecture in its header: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    domain = header.get("training_domain")
    model.training_domain = TrainingDomain.from_dict(domain) if domain is not None else None
    return model.to(device=device, dtype=dtype)


def write_training_domain(path: str | os.PathLike, domain: Any, output: str | os.PathLike | None = None) -> Path:
    """Record ``domain`` (a :class:`~fpscf.domain.TrainingDomain`, or None to remove it) in the
    header of the model file ``path``, written to ``output`` (default: ``path`` itself, atomically).

    Only the header changes: the tensors are copied byte for byte (no model is built), so the
    weights, and every result of the model, stay exactly what they were."""
    from safetensors.torch import load_file, save_file

    header = read_header(path)
    tensors = load_file(str(path))
    if domain is None:
        header.pop("training_domain", None)
    else:
        header["training_domain"] = domain.to_dict()
    target = Path(output) if output is not None else Path(path)
    with atomic_path(target, make_parents=True) as temporary:
        save_file(tensors, str(temporary), metadata={"fpscf": json.dumps(header)})
    return target


def record_training_domain(
    path: str | os.PathLike, training_files: list[str | os.PathLike], output: str | os.PathLike | None = None,
    key_map: Any = None,
) -> Any:
    """Compute the training domain of the extended XYZ ``training_files`` a model was trained on and
    record it in its file (:func:`write_training_domain`). Returns the domain."""
    from fpscf.domain import TrainingDomain

    domain = TrainingDomain.from_files(training_files, key_map)
    write_training_domain(path, domain, output)
    return domain


def model_digest(path: str | os.PathLike) -> str:
    """SHA-256 of what determines a model's results: its hyperparameters and tensors (names, dtypes,
    shapes, bytes); not the training domain, versions or the order of tensors in the file."""
    from safetensors import safe_open

    digest = hashlib.sha256(json.dumps(read_header(path)["hyperparameters"], sort_keys=True).encode())
    with safe_open(str(path), framework="pt") as handle:
        for name in sorted(handle.keys()):
            tensor = handle.get_tensor(name).contiguous()
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()

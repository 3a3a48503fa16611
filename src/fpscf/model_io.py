"""Model files: safetensors weights plus a plain-data JSON header. Loading never runs code.

The header (in the safetensors metadata) records the format, the package version, units, the
species and every hyperparameter, so ``load_model`` rebuilds the architecture from data alone,
and, for models that carry one, the training domain (:class:`fpscf.domain.TrainingDomain`: the
ranges of the training data the calculators check structures against). Files without it load
with ``model.training_domain = None``. A model may also carry a dispersion term added at inference
(:class:`fpscf.calculators.dispersion.DispersionSettings`, header entry ``dispersion``, e.g.
``{"method": "d3bj", "functional": "b3lyp", ...}``); files without it load with
``model.dispersion = None``. Both entries live beside the hyperparameters, not among them: neither
changes the network or its weights, and either can be rewritten in the header alone
(:func:`write_training_domain`, :func:`write_dispersion`). A fine-tuned model records the model it
started from (header entry ``parent``: name or path, weights digest, frozen blocks;
:mod:`fpscf.training.finetune`), loaded as ``model.parent`` (None for other models).

Integrity (:mod:`fpscf.model_checks`): the header records ``weights_sha256``, a digest of every
tensor, checked at load (a flipped byte is a clear error, not a model with E = 1e301 eV); every
weight must be finite; header values are bounded (``num_channels`` = 1e9 is refused before anything
is allocated). Files without a digest (written before it existed) load after the finiteness check.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from fpscf.atomic_files import atomic_path
from fpscf.errors import ModelFileError, ModelNotFoundError
from fpscf.model_checks import check_header, check_weights, update_digest, weights_digest

FORMAT_NAME = "fpscf-model"
FORMAT_VERSION = 1
UNITS = {"length": "Angstrom", "energy": "eV", "charge": "e", "electric_field": "V/Angstrom", "magnetic_field": "T"}


def _is_codegen_constant(key: str) -> bool:
    """Constants that e3nn's generated tensor-product code gains as buffers when a model is deep-copied
    (``..._compiled_main_left_right._tensor_constant0``): rebuilt with the architecture, not weights."""
    return "._compiled_main" in key and key.rsplit(".", 1)[-1].startswith("_tensor_constant")


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
    dispersion = _dispersion(getattr(model, "dispersion", None))
    if dispersion is not None:
        header["dispersion"] = dispersion.to_dict()
    parent = getattr(model, "parent", None)
    if parent is not None:  # a fine-tuned model: the model it started from (fpscf.training.finetune)
        header["parent"] = dict(parent)
    tensors = {
        k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if not _is_codegen_constant(k)
    }
    header["weights_sha256"] = weights_digest(tensors)
    with atomic_path(path, make_parents=True) as temporary:
        save_file(tensors, str(temporary), metadata={"fpscf": json.dumps(header)})


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The plain-data header of a model file; a clear error for missing, corrupt or foreign files."""
    from safetensors import safe_open

    path = _model_path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for bad files
        raise ModelFileError(
            f"{str(path)!r} is not a readable fpscf model file (expected safetensors written by "
            f"model.save): {str(error) or type(error).__name__}"
        ) from None
    if "fpscf" not in metadata:
        raise ModelFileError(f"{str(path)!r} is a safetensors file but not an fpscf model (no 'fpscf' header)")
    try:
        header = json.loads(metadata["fpscf"])
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{str(path)!r} has a corrupt header (not JSON: {error}); the file is damaged, "
                             "copy or export it again") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{str(path)!r} has a corrupt header (a JSON {type(header).__name__}, not an object)")
    version = header.get("format_version")
    if header.get("format") != FORMAT_NAME or not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(path)!r} has model format {header.get('format')!r} v{version} (written by fpscf "
            f"{header.get('fpscf_version', '?')}); this fpscf reads {FORMAT_NAME!r} up to v{FORMAT_VERSION} (upgrade fpscf)"
        )
    check_header(header, path)
    return header


def _model_path(path: str | os.PathLike) -> Path:
    """``path`` as a model file: a shipped model's name (:data:`fpscf.models.SHIPPED_MODELS`) is
    its file; a missing file or a directory is a :class:`ModelNotFoundError` saying what to give."""
    import difflib

    from fpscf.models import SHIPPED_MODELS, shipped_model_path

    text = os.fspath(path)
    candidate = Path(text)
    if candidate.is_file():
        return candidate
    if isinstance(text, str) and text in SHIPPED_MODELS:
        return shipped_model_path(text)
    if candidate.is_dir():
        inside = sorted(p.name for p in candidate.glob("*.fpscf"))
        hint = f"; it holds {', '.join(inside)}" if inside else "; it holds no .fpscf file"
        raise ModelNotFoundError(f"model {text!r} is a directory, not a model file: give the file{hint} "
                                 f"(a training run writes best.fpscf and final.fpscf)")
    close = difflib.get_close_matches(str(text), list(SHIPPED_MODELS), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ModelNotFoundError(
        f"model file {text!r} does not exist; {hint}give a .fpscf file or a shipped model name "
        f"({', '.join(sorted(SHIPPED_MODELS))})"
    )


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float64) -> Any:
    """Rebuild a :class:`~fpscf.model.FixedPointModel` from a file written by ``model.save`` (or a
    shipped model's name, e.g. ``"water-b3lyp"``),
    with its training domain as ``model.training_domain`` and its dispersion term as
    ``model.dispersion`` (:class:`~fpscf.calculators.dispersion.DispersionSettings`; each None if
    the file has none)."""
    from safetensors.torch import load_file

    from fpscf import __version__
    from fpscf.config import ModelConfig, hyperparameter_names
    from fpscf.domain import TrainingDomain
    from fpscf.model import FixedPointModel

    header = read_header(path)
    path = _model_path(path)
    written_by = f"written by fpscf {header.get('fpscf_version', '?')}; this is fpscf {__version__}"
    unknown = sorted(set(header["hyperparameters"]) - set(hyperparameter_names()) - {"atomic_numbers"})
    try:
        if unknown:
            raise ValueError(f"unknown hyperparameters {unknown}")
        config = ModelConfig.from_dict(header["hyperparameters"])
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{str(path)!r} has hyperparameters this fpscf cannot use ({written_by}): {error}; "
                             "use the fpscf version that wrote it (or a newer one), or retrain") from None
    state = load_file(str(path))
    check_weights(state, repr(str(path)), header.get("weights_sha256"))
    model = FixedPointModel(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelFileError(
            f"{str(path)!r} does not match the architecture in its header ({written_by}): missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    domain = header.get("training_domain")
    model.training_domain = TrainingDomain.from_dict(domain) if domain is not None else None
    model.dispersion = _dispersion(header.get("dispersion"))
    model.parent = header.get("parent")
    return model.to(device=device, dtype=dtype)


def _dispersion(value: Any) -> Any:
    """A DispersionSettings (or None) from a header entry, a dict or DispersionSettings."""
    from fpscf.calculators.dispersion import resolve_dispersion

    return resolve_dispersion(None, value)


def _rewrite_header(path: str | os.PathLike, key: str, value: Any, output: str | os.PathLike | None) -> Path:
    """Set (or, for None, remove) ``header[key]`` of the model file ``path``, written to ``output``
    (default ``path``, atomically); the tensors are copied byte for byte."""
    from safetensors.torch import load_file, save_file

    header = read_header(path)
    path = _model_path(path)
    tensors = load_file(str(path))
    check_weights(tensors, repr(str(path)), header.get("weights_sha256"))
    header.setdefault("weights_sha256", weights_digest(tensors))
    if value is None:
        header.pop(key, None)
    else:
        header[key] = value
    target = Path(output) if output is not None else Path(path)
    with atomic_path(target, make_parents=True) as temporary:
        save_file(tensors, str(temporary), metadata={"fpscf": json.dumps(header)})
    return target


def write_training_domain(path: str | os.PathLike, domain: Any, output: str | os.PathLike | None = None) -> Path:
    """Record ``domain`` (a :class:`~fpscf.domain.TrainingDomain`, or None to remove it) in the
    header of the model file ``path``, written to ``output`` (default: ``path`` itself, atomically).

    Only the header changes: the tensors are copied byte for byte (no model is built), so the
    weights, and every result of the model, stay exactly what they were."""
    return _rewrite_header(path, "training_domain", None if domain is None else domain.to_dict(), output)


def write_dispersion(path: str | os.PathLike, dispersion: Any, output: str | os.PathLike | None = None) -> Path:
    """Record ``dispersion`` (a dict such as ``{"method": "d3bj", "functional": "b3lyp"}``, a
    :class:`~fpscf.calculators.dispersion.DispersionSettings`, or None to remove it) in the header of
    the model file ``path``, written to ``output`` (default: ``path`` itself, atomically).

    Only the header changes (``fpscf dispersion``): the tensors are copied byte for byte, so the
    learnt part of the model stays exactly what it was; calculators then add the D3 term."""
    settings = _dispersion(dispersion)
    return _rewrite_header(path, "dispersion", None if settings is None else settings.to_dict(), output)


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
    """SHA-256 of what determines a model's results: its hyperparameters, its dispersion term if it
    has one, and tensors (names, dtypes, shapes, bytes); not the training domain, versions or the order
    of tensors in the file. (Files without a dispersion term have the digest they had before the
    term existed.)"""
    from safetensors import safe_open

    header = read_header(path)
    digest = hashlib.sha256(json.dumps(header["hyperparameters"], sort_keys=True).encode())
    if header.get("dispersion") is not None:
        digest.update(b"dispersion|" + json.dumps(header["dispersion"], sort_keys=True).encode())
    with safe_open(str(_model_path(path)), framework="pt") as handle:
        update_digest(digest, {name: handle.get_tensor(name) for name in handle.keys()})
    return digest.hexdigest()

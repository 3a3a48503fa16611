"""Models shipped inside the package (file, model card and the training config that made it).

``FixedPointCalculator()`` without a model loads :data:`DEFAULT_MODEL`; any shipped model can be
named instead of a path (``FixedPointCalculator(model="water-b3lyp")``, ``model="alas-lda"``). Each model ``name`` has
``<stem>.fpscf`` (weights and plain-data header), ``<stem>.md`` (model card) and ``<stem>.yaml``
(the exact ``fpscf train`` config) in this directory.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

#: Shipped model names → file stem in this directory.
SHIPPED_MODELS: dict[str, str] = {
    "water-b3lyp": "water_b3lyp",  # water, OH⁻, H₃O⁺ clusters; B3LYP/aug-cc-pVDZ (PySCF)
    "alas-lda": "alas_lda",  # crystalline AlAs (zinc blende); LDA DFPT (Quantum ESPRESSO)
}
#: The model ``FixedPointCalculator()`` loads when no model is given.
DEFAULT_MODEL = "water-b3lyp"


def _file(name: str, suffix: str) -> Path:
    if name not in SHIPPED_MODELS:
        from fpscf.errors import ModelNotFoundError

        raise ModelNotFoundError(f"unknown shipped model {name!r}; shipped models: {', '.join(sorted(SHIPPED_MODELS))}")
    path = Path(str(resources.files(__name__).joinpath(SHIPPED_MODELS[name] + suffix)))
    if not path.is_file():
        raise FileNotFoundError(
            f"shipped model {name!r} is missing its file {path.name} (a broken install?); reinstall fpscf"
        )
    return path


def shipped_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of a shipped model file (``.fpscf``)."""
    return _file(name, ".fpscf")


def model_card(name: str = DEFAULT_MODEL) -> str:
    """The model card (Markdown) of a shipped model: data, level of theory, architecture,
    training schedule and errors on held-out reference data."""
    return _file(name, ".md").read_text(encoding="utf-8")


def training_config_path(name: str = DEFAULT_MODEL) -> Path:
    """The ``fpscf train`` config that reproduces a shipped model."""
    return _file(name, ".yaml")


def resolve_model(model: Any = None) -> Any:
    """A FixedPointModel from a model object, a ``.fpscf`` path, a shipped model name, or None
    (:data:`DEFAULT_MODEL`). A path that exists wins over a shipped name."""
    from fpscf.model import FixedPointModel
    from fpscf.model_io import load_model

    if isinstance(model, FixedPointModel):
        return model
    if model is None:
        return load_model(shipped_model_path(DEFAULT_MODEL))
    if isinstance(model, str) and model in SHIPPED_MODELS and not os.path.exists(model):
        return load_model(shipped_model_path(model))
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    raise TypeError(
        f"model must be a FixedPointModel, a path to a model file or a shipped model name "
        f"{sorted(SHIPPED_MODELS)}, got {type(model).__name__}"
    )


__all__ = [
    "DEFAULT_MODEL",
    "SHIPPED_MODELS",
    "model_card",
    "resolve_model",
    "shipped_model_path",
    "training_config_path",
]

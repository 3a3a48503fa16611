"""``fpscf export``: write a model as the TorchScript file ``pair_style fpscf`` loads.

The file is a TorchScript archive (:class:`fpscf.export.deployed.DeployedModel`) with a plain-data
header ``fpscf_export.json`` (source model, species, cutoff, SCF settings, the training domain
the pair style checks structures against, the model's dispersion term, fpscf and torch versions).
LAMMPS runs it through libtorch without Python. TorchScript archives contain code, so load only
files you made or trust (fpscf's own ``.fpscf`` model files contain no code).

The exported module is the learnt model alone. A model with a D3 dispersion term (``dispersion`` in
the header, with ``dispersion_pair_style``: the ``pair_style dispersion/d3`` arguments that
reproduce it) needs LAMMPS' own D3 beside it, ``pair_style hybrid/overlay fpscf ... dispersion/d3 ...``:
:func:`fpscf.export.lammps_input.pair_commands` writes those lines from the header.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from fpscf.atomic_files import atomic_path
from fpscf.electrostatics.gaussian_multipoles import SPLINE_ORDER
from fpscf.export.deployed import deploy
from fpscf.scf.settings import SCFSettings

HEADER_NAME = "fpscf_export.json"


def export_model(
    model: Any,
    output: str | os.PathLike[str],
    *,
    scf_tolerance: float = 1e-6,
    max_scf_steps: int = 200,
    mixing_parameter: float = 0.5,
    total_charge: float = 0.0,
    kspace: str = "auto",
    mesh_spacing: float | None = None,
    spline_order: int = SPLINE_ORDER,
    dispersion: Any = None,
) -> Path:
    """Write ``model`` (a FixedPointModel, a ``.fpscf`` path or a shipped model name) to ``output``.

    scf_tolerance (e), max_scf_steps and total_charge (e) are defaults that ``pair_style fpscf``
    options (``scf_tol``, ``max_scf``, ``charge``) override. kspace ``ewald`` sums periodic
    electrostatics over k-vectors (exact, cost ∝ N·volume), ``pme`` on a particle mesh (cost ∝ N,
    ~1e-8 relative), ``auto`` (default) ``pme`` where the model allows it; mesh_spacing Å and
    spline_order as in :func:`fpscf.export.deploy`. dispersion: None records the model's D3 term
    (``model.dispersion``), False none, a dict another (as ``FixedPointCalculator(dispersion=...)``).
    Returns the written path.
    """
    from fpscf import __version__
    from fpscf.calculators.dispersion import resolve_dispersion
    from fpscf.models import resolve_model

    source = model if isinstance(model, (str, os.PathLike)) else None
    loaded = resolve_model(model)
    settings = SCFSettings(scf_tolerance=scf_tolerance, max_scf_steps=max_scf_steps, mixing_parameter=mixing_parameter)
    module = deploy(loaded, settings, total_charge, kspace, mesh_spacing, spline_order)
    domain = getattr(loaded, "training_domain", None)
    d3 = resolve_dispersion(dispersion, getattr(loaded, "dispersion", None))
    header = {
        "format": "fpscf-lammps",
        "format_version": 1,
        "source_model": str(source) if source is not None else None,
        "species": list(module.species_symbols),
        "r_max": module.r_max,
        "num_interactions": module.num_interactions,
        "state_size": module.state_size,
        "exchange_width": module.exchange_width if module.ghost_exchange else 0,
        "boundary": loaded.config.electrostatic_pbc_method,
        "scf_tolerance": scf_tolerance,
        "max_scf_steps": max_scf_steps,
        "total_charge": total_charge,
        "kspace": module.kspace,
        "mesh_spacing": module.mesh_spacing if module.kspace == "pme" else None,
        "spline_order": spline_order if module.kspace == "pme" else None,
        "training_domain": domain.to_dict() if domain is not None else None,
        "dispersion": d3.to_dict() if d3 is not None else None,
        "dispersion_pair_style": _dispersion_pair_style(d3),
        "fpscf_version": __version__,
        "torch_version": torch.__version__,
    }
    target = Path(output)
    with atomic_path(target) as temporary:
        module.save(str(temporary), _extra_files={HEADER_NAME: json.dumps(header, indent=1)})
    return target


def _dispersion_pair_style(d3: Any) -> str | None:
    """``pair_style dispersion/d3`` arguments for the D3 term ``d3`` (None without one); a warning, and
    None, for a functional LAMMPS does not know (the ASE calculator still adds the term)."""
    if d3 is None:
        return None
    try:
        return d3.lammps_pair_style()
    except ValueError as error:
        warnings.warn(f"fpscf export: the model's dispersion cannot be run in LAMMPS: {error}", stacklevel=3)
        return None


def read_export_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The plain-data header of an exported file (no model code is run)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = [name for name in archive.namelist() if name.endswith("extra/" + HEADER_NAME)]
            if not names:
                raise ValueError(f"{path} is a TorchScript archive but not an fpscf export (no {HEADER_NAME})")
            return json.loads(archive.read(names[0]))
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path} is not an fpscf export (not a TorchScript archive: {error})") from None

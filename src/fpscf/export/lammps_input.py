"""The ``pair_style``/``pair_coeff`` lines that run an exported model in LAMMPS, its D3 term included.

A model with a dispersion term (``fpscf dispersion``) is exported as its learnt part; LAMMPS adds
the D3 energy with its own ``pair_style dispersion/d3`` (EXTRA-PAIR), overlaid on ``fpscf``::

    neigh_modify one 41000 page 410000
    pair_style hybrid/overlay fpscf efield 0 0 0.05 dispersion/d3 bj b3-lyp 31.75063265 21.16708844
    pair_coeff * * fpscf water.lmp O H
    pair_coeff * * dispersion/d3 O H

Inside ``hybrid/overlay`` the pair style raises the hybrid's communication widths to its ghost
exchange width when LAMMPS initialises (``PairFPSCF::init_style``), so models with several
interaction layers need nothing extra. The ``neigh_modify`` line makes room for the many neighbours within the D3 cutoff (LAMMPS' default of
2000 per atom overflows at 31.75 Å).

:func:`pair_commands` reads the export header and writes these lines (or the plain
``pair_style fpscf`` pair for a model without dispersion).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from fpscf.export.model_export import read_export_header


def pair_commands(
    model: str | os.PathLike[str], symbols: Sequence[str], options: str = "", dispersion: Any = None
) -> list[str]:
    """LAMMPS commands (units metal) for the exported model file ``model`` (``fpscf export``) with
    one element symbol per atom type in ``symbols``; ``options`` are ``pair_style fpscf`` keywords
    (``"efield 0 0 0.05 scf_tol 1e-6"``). Put them after ``read_data`` (or ``create_box``).

    dispersion: None adds the D3 term the export header records (``dispersion_pair_style``), False
    leaves it out, a dict (``{"method": "d3bj", "functional": "b3lyp"}``) or
    :class:`~fpscf.calculators.dispersion.DispersionSettings` adds that one instead.
    """
    from fpscf.calculators.dispersion import resolve_dispersion

    header = read_export_header(model)
    species = set(header["species"])
    unknown = [symbol for symbol in symbols if symbol not in species]
    if not symbols or unknown:
        raise ValueError(
            f"symbols must name one element of the model {sorted(species)} per atom type, got {list(symbols)}"
        )
    if dispersion is None and header.get("dispersion") is not None and header.get("dispersion_pair_style") is None:
        raise ValueError(f"{model} records a dispersion term LAMMPS cannot run ({header['dispersion']}); pass "
                         "dispersion=False to run without it")
    settings = resolve_dispersion(dispersion, header.get("dispersion"))
    types = " ".join(symbols)
    fpscf_style = " ".join(["fpscf", *options.split()])
    if settings is None:
        return [f"pair_style {fpscf_style}", f"pair_coeff * * {model} {types}"]
    # room for every neighbour within the D3 cutoff + skin at up to 0.25 atoms/Å³ (water: 0.1)
    one = int(np.ceil(4.0 / 3.0 * np.pi * (settings.cutoff + 2.0) ** 3 * 0.25 / 1000.0)) * 1000
    return [
        f"neigh_modify one {one} page {10 * one}",
        f"pair_style hybrid/overlay {fpscf_style} {settings.lammps_pair_style()}",
        f"pair_coeff * * fpscf {model} {types}",
        f"pair_coeff * * dispersion/d3 {types}",
    ]

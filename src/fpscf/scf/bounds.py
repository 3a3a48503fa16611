"""Bounds that keep the density response of every model finite (docs/contributing.md, Principles).

The strict quadratic readout gives each atom the energy ``½ Σ_l κ_{i,l} |p_{i,l} − t_{i,l}|²`` with
hardness ``κ = 1/c`` from the update's compliance c. The Hartree energy ``½ pᵀ J p`` of Gaussian
multipoles is positive semidefinite when every atom's own density is included (J_full ⪰ 0); without
self-interaction ``J = J_full − S`` with S the block-diagonal self-Coulomb of one Gaussian multipole.
So the Hessian of the energy in the multipoles is ``K + J ⪰ K − S``: if every hardness exceeds the
self-Coulomb of its order, ``κ_l > s_l``, the energy is strictly convex in p for every geometry —
bounded below, with a unique minimum, however close the atoms come. ``minimum_hardness`` (bounded
compliance in :class:`~fpscf.scf.updates.BiasedLinearPotentialEmbedding`) enforces ``κ_l ≥ κ_min,l``.
"""

from __future__ import annotations

import torch

from fpscf.electrostatics.multipoles import l_block

#: ``minimum_hardness: auto`` sets κ_min,l to this multiple of the self-Coulomb s_l.
AUTO_HARDNESS_MARGIN = 1.25


def self_coulomb_hardness(electrostatics: torch.nn.Module, response_max_l: int) -> list[float]:
    """Largest self-Coulomb eigenvalue s_l of one atom's Gaussian multipoles of order l, for l = 0..
    ``response_max_l``: eV/e² for charges, eV/(e·Å)² for dipoles, eV/(e·Å²)² for quadrupoles."""
    size = int(electrostatics.config.max_l + 1) ** 2
    unit = torch.eye(size, dtype=torch.float64)
    matrix = electrostatics.self_potential(unit)[:, 0, :size]  # (K, K): potential of each unit multipole
    values = []
    for l in range(response_max_l + 1):
        block = l_block(l_block(matrix, l).T, l)
        values.append(float(torch.linalg.eigvalsh(0.5 * (block + block.T)).max()))
    return values


def resolve_minimum_hardness(
    setting: object, electrostatics: torch.nn.Module, response_max_l: int, include_self_interaction: bool
) -> list[float] | None:
    """κ_min,l per responding l from the ``minimum_hardness`` setting: None (unbounded), ``auto``
    (AUTO_HARDNESS_MARGIN × the self-Coulomb) or explicit values, which must exceed the self-Coulomb
    unless the Hartree energy keeps each atom's own density (then any positive value is convex)."""
    if setting is None:
        return None
    floor = self_coulomb_hardness(electrostatics, response_max_l)
    if setting == "auto":
        return [AUTO_HARDNESS_MARGIN * s for s in floor]
    values = [float(v) for v in setting]  # type: ignore[union-attr]
    if not include_self_interaction and any(v <= s for v, s in zip(values, floor)):
        shown = ", ".join(f"{s:.3g}" for s in floor)
        raise ValueError(
            f"minimum_hardness {values} does not exceed the self-Coulomb of one Gaussian multipole [{shown}] "
            "(eV/e², eV/(e·Å)², ...): the energy would not be convex in the multipoles at close contact; "
            "use larger values or minimum_hardness: auto"
        )
    return values

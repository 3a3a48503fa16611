"""Heads for several levels of theory: one shared encoder and SCF, an energy head per level.

A model with ``num_levels`` L > 1 learns data computed at L levels of theory (e.g. B3LYP and
PBE, or two codes' conventions) at once; each structure's ``level`` label (0 .. L−1) picks its
head. Level 0 is the model itself; level l maps the model's atom energies e_i (eV, which include
the reference atomic energies E0[Z_i]) to

    e_i^(l) = s_l (e_i − E0[Z_i]) + E0[Z_i] + δ_l[Z_i],

an energy scale s_l = exp(σ_l) > 0 on the whole energy of the structure above its reference atomic
energies (local, field, Hartree, applied-field and short-range repulsion energies) and per-element
atomic energies shifted by δ_l (eV). Level 0 has s = 1 and δ = 0, so one level is the shared model
and the others are measured against it. The head acts on the energy before any derivative is
taken, so forces, stress, Hessian, dipole (−∂E/∂ε), polarizability and Born charges of level l are
those of its energy (all scale with s_l); the density, charges and SCF are shared (a magnetic
model's moment energy is added after the head). Two levels that differ by a per-element shift and
a scale are represented exactly.

The calculator takes ``level=``; :func:`select_level` makes the single-level model of a level whose
scale is 1 for the LAMMPS export (``fpscf export --level``). The deployed model has no heads: the
export of a multi-level model object is its level 0.
"""

from __future__ import annotations

import torch


class LevelHeads(torch.nn.Module):
    """Energy heads of levels 1 .. L−1 (level 0 is the identity).

    Args:
        num_levels: L ≥ 2.
        num_species: number of elements of the model.
    """

    def __init__(self, num_levels: int, num_species: int) -> None:
        super().__init__()
        if num_levels < 2:
            raise ValueError(f"LevelHeads needs num_levels >= 2, got {num_levels}")
        self.num_levels = num_levels
        #: log of the energy scale of levels 1 .. L−1
        self.log_scale = torch.nn.Parameter(torch.zeros(num_levels - 1))
        #: atomic-energy shifts δ_l[Z] (eV) of levels 1 .. L−1, per element index
        self.energy_shift = torch.nn.Parameter(torch.zeros(num_levels - 1, num_species))

    def scales(self) -> torch.Tensor:
        """(L,) the energy scale of every level (1 for level 0)."""
        return torch.cat([self.log_scale.new_ones(1), self.log_scale.exp()])

    def shifts(self) -> torch.Tensor:
        """(L, S) eV: the atomic-energy shift of every level and element (0 for level 0)."""
        return torch.cat([self.energy_shift.new_zeros(1, self.energy_shift.shape[1]), self.energy_shift])

    def forward(self, node_energy: torch.Tensor, species: torch.Tensor, reference: torch.Tensor,
                level: torch.Tensor) -> torch.Tensor:
        """Atom energies (N,) eV at each atom's level.

        Args:
            node_energy: (N,) eV, the shared model's atom energies (with the reference energies).
            species: (N,) element index of each atom.
            reference: (S,) eV, the model's reference atomic energies E0.
            level: (N,) int64, level of each atom's structure.
        """
        if level.numel() and (int(level.min()) < 0 or int(level.max()) >= self.num_levels):
            raise ValueError(f"level labels must lie in 0..{self.num_levels - 1} for a model with num_levels "
                             f"{self.num_levels}, got {sorted(set(level.tolist()))}")
        scale = self.scales().to(node_energy.dtype)[level]
        base = reference.to(node_energy.dtype)[species]
        return scale * (node_energy - base) + base + self.shifts().to(node_energy.dtype)[level, species]


def structure_levels(graph: object, num_levels: int) -> torch.Tensor:
    """(B,) int64: each structure's ``level`` label, 0 where it has none."""
    labels = getattr(graph, "labels", {})
    masks = getattr(graph, "label_masks", {})
    batch_size = int(graph.num_graphs)  # type: ignore[attr-defined]
    device = graph.positions.device  # type: ignore[attr-defined]
    if "level" not in labels:
        return torch.zeros(batch_size, dtype=torch.int64, device=device)
    level = labels["level"].to(torch.int64).reshape(batch_size)
    return torch.where(masks["level"].reshape(batch_size), level, torch.zeros_like(level))


def select_level(model: torch.nn.Module, level: int) -> torch.nn.Module:
    """A single-level copy of ``model`` that answers at ``level``, for tools that take one level
    (the LAMMPS export: ``fpscf export MODEL --level L``). A head folds into a single-level model
    when its energy scale is 1 (levels that differ by atomic energies): E0 becomes E0 + δ_l.

    Raises:
        ValueError: ``level`` outside the model's levels, or a level whose energy scale is not 1.
    """
    import copy
    import dataclasses

    heads = getattr(model, "level_heads", None)
    levels = 1 if heads is None else heads.num_levels
    if not 0 <= int(level) < levels:
        raise ValueError(f"level {level} is not one of this model's levels 0..{levels - 1}")
    if heads is None:
        return model
    scale = float(heads.scales()[level].detach())
    if abs(scale - 1.0) > 1e-12:
        raise ValueError(
            f"level {level} scales the model's energy by {scale:.6g}; a single-level model (the LAMMPS export) can "
            "carry a level that differs from level 0 by atomic energies only (scale 1); use the ASE calculator "
            f"with level={level}"
        )
    from fpscf.model import FixedPointModel

    numbers = list(model.config.atomic_numbers)
    energies = (model.atomic_energies.detach() + heads.shifts()[level].detach().to(model.atomic_energies.dtype)).tolist()
    config = dataclasses.replace(model.config, num_levels=1,
                                 atomic_energies={int(z): float(e) for z, e in zip(numbers, energies)})
    single = FixedPointModel(config).to(dtype=model.atomic_energies.dtype)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("level_heads.")}
    state["atomic_energies"] = torch.tensor(energies, dtype=model.atomic_energies.dtype)
    single.load_state_dict(state)
    for name in ("training_domain", "dispersion", "parent"):
        setattr(single, name, copy.deepcopy(getattr(model, name, None)))
    return single


__all__ = ["LevelHeads", "select_level", "structure_levels"]

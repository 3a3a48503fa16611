"""Electrostatics of one structure whose atoms are split over ranks (TorchScript).

What the deployed model (``pair_style fpscf``) uses for the Hartree potential of its density;
each rank holds its owned atoms, and the one global step per SCF iteration is a sum over ranks
through the injected reduction (:mod:`fpscf.scf.reduction`):

* periodic, ``pme``: each rank spreads its atoms on the particle mesh (:mod:`.mesh`), the grid is
  summed over ranks, and potentials are gathered at the owned atoms: O(N log N);
* periodic, ``ewald``: the structure factor S(k) of the direct k-sum (:mod:`.reciprocal`) is
  summed over ranks: O(N K), exact;
* open: every rank's positions and multipoles are gathered and summed in pairs (small clusters).

Self-interaction follows the model's flags (the reciprocal and mesh sums contain every atom's own
density, the pair sum does not). :meth:`RankElectrostatics.prepare` computes everything that depends
only on the geometry once per call; :meth:`RankElectrostatics.potential` is the linear map the SCF
steps and the adjoint apply.
"""

from typing import NamedTuple, Optional, Tuple

import torch

from fpscf.electrostatics.gaussian_multipoles import MESH_SPACING_FACTOR
from fpscf.electrostatics.kernels import self_radial_functions, smeared_coulomb_radial_functions
from fpscf.electrostatics.mesh import MeshGeometry, detach_mesh, grid_shape, mesh_potential_features, prepare_mesh, spread
from fpscf.electrostatics.multipoles import split_multipoles
from fpscf.electrostatics.pair_fields import potential_derivatives, required_radial_order, self_features, stack_features
from fpscf.electrostatics.reciprocal import (
    ReciprocalGeometry,
    detach_reciprocal,
    half_space_miller_indices,
    prepare_reciprocal,
    reciprocal_potential_features,
    structure_factor,
)

#: Periodic electrostatics: ``ewald`` sums the k-vectors directly (exact, O(N K)); ``pme`` uses a
#: smooth particle mesh (O(N p³ + M log M), relative error ~1e-8 at the default mesh).
KSPACE_METHODS = ("ewald", "pme")


class RankGeometry(NamedTuple):
    """Geometry of one evaluation: periodic or open; the reciprocal (``ewald``) or mesh (``pme``)
    data of a periodic cell; for open boundaries the pairs (receiver row, source index in the
    gathered atoms, separation (P, 3) Å, radial kernels (P, C, n)); this rank's offset and the
    total number of atoms in rank order."""

    periodic: bool
    recip: Optional[ReciprocalGeometry]
    mesh: Optional[MeshGeometry]
    pairs: Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    offset: int
    total: int


def detach_geometry(geometry: RankGeometry) -> RankGeometry:
    """The same geometry cut from autograd (SCF steps and the adjoint need no derivatives of it)."""
    recip = geometry.recip
    mesh = geometry.mesh
    rows, sources, separation, radial = geometry.pairs
    return RankGeometry(
        geometry.periodic,
        detach_reciprocal(recip) if recip is not None else None,
        detach_mesh(mesh) if mesh is not None else None,
        (rows, sources, separation.detach(), radial.detach()),
        geometry.offset,
        geometry.total,
    )


class RankElectrostatics(torch.nn.Module):
    """Hartree potential projections (n_local, 1+W, (L+1)²) of a density split over ranks."""

    max_l: int
    radial_order: int
    smearing_width: float
    k_cutoff: float
    coulomb_constant: float
    kspace: str
    mesh_spacing: float
    spline_order: int

    def __init__(self, electrostatics: torch.nn.Module, reduction: torch.nn.Module, kspace: str,
                 mesh_spacing: Optional[float], spline_order: int) -> None:
        """From the model's :class:`~fpscf.electrostatics.gaussian_multipoles.GaussianMultipoleElectrostatics`."""
        super().__init__()
        config = electrostatics.config
        dtype = torch.float64
        self.reduction = reduction
        self.max_l = int(config.max_l)
        self.radial_order = int(required_radial_order(config.multipole_max_l, config.max_l))
        self.smearing_width = float(config.smearing_width)
        self.k_cutoff = float(config.k_cutoff)
        self.coulomb_constant = float(config.coulomb_constant)
        self.kspace = kspace
        self.register_buffer("receiver_widths", electrostatics.receiver_widths.detach().to(dtype).clone())
        self.register_buffer("interaction_widths", electrostatics.interaction_widths.detach().to(dtype).clone())
        self.register_buffer("quadrupole_matrices", electrostatics.quadrupole_matrices.detach().to(dtype).clone())
        narrowest = float(self.interaction_widths.min())
        self.mesh_spacing = float(mesh_spacing) if mesh_spacing is not None else MESH_SPACING_FACTOR * narrowest
        self.spline_order = int(spline_order)
        self.register_buffer(
            "self_radial", self_radial_functions(self.interaction_widths, self.radial_order, self.coulomb_constant)
        )
        keep = [config.include_self_interaction] + [config.include_field_self_interaction] * len(config.receiver_widths)
        self.register_buffer("keep_self", torch.tensor([float(flag) for flag in keep], dtype=dtype)[None, :, None])

    def gather_rows(self, rows: torch.Tensor, offset: int, total: int) -> torch.Tensor:
        """Every rank's ``rows`` (n_local, ...) stacked in rank order (total, ...), differentiably."""
        padded = rows.new_zeros([total] + rows.shape[1:])
        padded = padded.index_copy(0, torch.arange(offset, offset + rows.shape[0], device=rows.device), rows)
        return self.reduction.sum_ranks(padded)

    def prepare(self, owned: torch.Tensor, box: torch.Tensor, periodic: bool) -> RankGeometry:
        """Geometry-only data, differentiable in the owned unwrapped positions (n_local, 3) Å and
        the cell (3, 3) Å."""
        device = owned.device
        n_local = owned.shape[0]
        no_index = torch.zeros(0, dtype=torch.long, device=device)
        pairs = (no_index, no_index, owned.new_zeros(0, 3), owned.new_zeros(0, 1, 1))
        if periodic and self.kspace == "pme":
            shape = grid_shape(box.detach(), self.mesh_spacing)
            mesh = prepare_mesh(owned, box, shape, self.spline_order, self.interaction_widths, self.coulomb_constant)
            return RankGeometry(True, None, mesh, pairs, 0, n_local)
        if periodic:
            miller = half_space_miller_indices(box.detach(), self.k_cutoff)
            recip = prepare_reciprocal(
                owned, box, miller, self.smearing_width, self.receiver_widths,
                self.quadrupole_matrices if self.max_l >= 2 else None, self.coulomb_constant,
            )
            return RankGeometry(True, recip, None, pairs, 0, n_local)
        info = self.reduction.world(owned)
        rank = int(info[0])
        counts = owned.new_zeros(int(info[1]))
        counts[rank] = float(n_local)
        counts = self.reduction.sum_ranks(counts)
        offset = int(counts[:rank].sum())
        total = int(counts.sum())
        everyone = self.gather_rows(owned, offset, total)
        # all pairs (receiver i owned here, source j anywhere, j != i), receiver-major
        own_index = torch.arange(offset, offset + n_local, device=device)
        all_index = torch.arange(total, device=device)
        keep = own_index[:, None] != all_index[None, :]
        sources = all_index[None, :].expand(n_local, total)[keep]
        receiver_rows = torch.arange(n_local, device=device)[:, None].expand(n_local, total)[keep]
        separation = owned[receiver_rows] - everyone[sources]
        radial = smeared_coulomb_radial_functions(
            (separation * separation).sum(-1)[:, None], self.interaction_widths[None, :], self.radial_order,
            self.coulomb_constant,
        )
        return RankGeometry(False, None, None, (receiver_rows, sources, separation, radial), offset, total)

    def potential(self, geometry: RankGeometry, multipoles: torch.Tensor) -> torch.Tensor:
        """Hartree potential projections (n_local, 1+W, (L+1)²) of the whole density at the owned atoms."""
        mesh = geometry.mesh
        recip = geometry.recip
        if geometry.periodic and mesh is not None:
            density = self.reduction.sum_ranks(spread(mesh, multipoles))
            features = mesh_potential_features(mesh, density, self.max_l)
        elif geometry.periodic:
            assert recip is not None
            real, imag = structure_factor(recip, multipoles)
            summed = self.reduction.sum_ranks(torch.stack([real, imag]))
            features = reciprocal_potential_features(recip, summed[0], summed[1], self.max_l)
        else:
            receiver_rows, sources, separation, radial = geometry.pairs
            gathered = self.gather_rows(multipoles, geometry.offset, geometry.total)[sources]
            charges, dipoles, quadrupoles = split_multipoles(gathered, self.quadrupole_matrices)
            v0, v1, v2 = potential_derivatives(separation, radial, charges, dipoles, quadrupoles, self.max_l)
            pair_features = stack_features(v0, v1, v2, self.quadrupole_matrices)
            features = pair_features.new_zeros([multipoles.shape[0]] + pair_features.shape[1:])
            features = features.index_add(0, receiver_rows, pair_features)
        # the reciprocal and mesh sums contain each atom's own density, the pair sum does not
        weight = self.keep_self - 1.0 if geometry.periodic else self.keep_self
        return features + self_features(multipoles, self.self_radial, self.quadrupole_matrices, self.max_l) * weight

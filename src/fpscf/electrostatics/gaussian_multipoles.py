"""Electrostatics of Gaussian multipole densities: Hartree energy and field features.

:class:`GaussianMultipoleElectrostatics` splits the work the way the SCF loop needs it:
:meth:`~GaussianMultipoleElectrostatics.prepare` computes everything that depends only on the
geometry (pair kernels, k-vectors and phases) once; :meth:`~GaussianMultipoleElectrostatics.potential`
then maps multipoles to potential projections, a linear map evaluated at every SCF step.

Potential projections have shape (N, 1 + W, (L + 1)²): channel 0 uses the density width σ itself
(so the Hartree energy is ``½ Σ_i p_i · f_i,0``), channels 1..W the receiver widths ``w_k``. The lm
layout is e3nn's ``0e + 1o + 2e``: potential (V), gradient (V/Å), ``½ M_m : ∇∇v`` (V/Å²).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from fpscf.electrostatics.kernels import self_radial_functions, smeared_coulomb_radial_functions
from fpscf.electrostatics.mesh import MeshGeometry, grid_shape, mesh_potential_features, prepare_mesh, spread
from fpscf.electrostatics.multipoles import (
    num_multipole_coefficients,
    quadrupole_basis_matrices,
    split_multipoles,
)
from fpscf.electrostatics.nvalchemi_backend import nvalchemi_periodic_features
from fpscf.electrostatics.open_boundary import (
    PairGeometry,
    all_pairs,
    pair_potential_derivatives,
    prepare_pairs,
)
from fpscf.electrostatics.pair_fields import (
    required_radial_order,
    self_features,
    stack_features,
)
from fpscf.electrostatics.reciprocal import (
    ReciprocalGeometry,
    half_space_miller_indices,
    prepare_reciprocal,
    reciprocal_energy,
    reciprocal_potential_features,
    structure_factor,
)
from fpscf.electrostatics.slab import slab_correction_features
from fpscf.units import COULOMB_CONSTANT

BOUNDARY_MODES = ("open", "periodic", "slab")
#: ``torch``: pure-torch periodic sums (exportable); ``nvalchemi``: Warp direct-k kernels of
#: nvalchemi-toolkit-ops for the periodic sums (not exportable; slower on CPU, benchmarks/electrostatics.out).
ELECTROSTATICS_BACKENDS = ("torch", "nvalchemi")
#: Periodic sums of the torch backend: ``pme`` (smooth particle mesh, O(N log N), ~1e-8 relative),
#: ``ewald`` (direct k-sum, exact to the cutoff, O(N²); with ``ewald_split_width`` O(N^1.5)),
#: ``auto``: ``pme`` where it applies (multipoles and receivers up to l = 1, no Ewald split).
KSPACE_METHODS = ("auto", "ewald", "pme")
#: Particle mesh: grid spacing as a fraction of the narrowest interaction width, B-spline order
#: (the export's defaults too). Error against the direct sum (12 charges and dipoles, 8 Å cell):
#: 0.35/8: 3e-7 eV, 8e-7 V/Å; 0.35/10: 6e-9 eV, 4e-8 V/Å; 0.3/10: 8e-10 eV, 6e-9 V/Å.
MESH_SPACING_FACTOR = 0.35
SPLINE_ORDER = 10


@dataclass(frozen=True)
class ElectrostaticsConfig:
    """Settings of the Gaussian-multipole electrostatics.

    multipole_max_l: highest multipole of the density (0, 1, 2); smearing_width: σ (Å);
    receiver_widths: w_k (Å) of the field-feature receivers; feature_max_l: highest l of the
    field features (0, 1, 2); kspace_cutoff_factor: ``k_cut = factor / min(σ, w_k)`` (Å⁻¹), the
    Fourier kernels are suppressed by ``e^{−factor²/2}`` at the cutoff; include_self_interaction:
    keep each Gaussian's interaction with itself in the Hartree energy;
    include_field_self_interaction: keep an atom's own density in its field features;
    backend: ``torch`` or ``nvalchemi`` for periodic sums (open boundaries are always pure torch);
    ewald_split_width: a (Å) or None. With the torch backend, periodic sums are split Ewald-style:
    the kernel ``Φ_s`` becomes ``(Φ_s − Φ_√(s²+a²))`` summed in real space over neighbours within
    ``kspace_cutoff_factor·√(s_max² + a²)`` plus a reciprocal sum with the extra Gaussian width a
    (cutoff ``kspace_cutoff_factor/√(min(σ, w)² + a²)``). The result is the same; the cost drops from
    O(N²) to about O(N^1.5) for a suitable a (≈ 2–3 Å for thousands of atoms). kspace_method:
    ``ewald`` (the direct k-sum above, the reference), ``pme`` (smooth particle mesh, O(N log N),
    relative error ~1e-8; l ≤ 1, torch backend, no split) or ``auto`` (``pme`` where it applies).
    """

    multipole_max_l: int = 1
    smearing_width: float = 1.0
    receiver_widths: tuple[float, ...] = (1.0, 2.0)
    feature_max_l: int = 1
    kspace_cutoff_factor: float = 7.0
    include_self_interaction: bool = False
    include_field_self_interaction: bool = False
    backend: str = "torch"
    ewald_split_width: float | None = None
    kspace_method: str = "ewald"
    coulomb_constant: float = field(default=COULOMB_CONSTANT)

    def __post_init__(self) -> None:
        num_multipole_coefficients(self.multipole_max_l)
        if self.feature_max_l not in (0, 1, 2):
            raise ValueError(f"field_feature_max_l must be 0, 1 or 2, got {self.feature_max_l!r}")
        if not self.smearing_width > 0:
            raise ValueError(f"atomic_multipoles_smearing_width must be > 0 Å, got {self.smearing_width!r}")
        if len(self.receiver_widths) == 0 or any(not w > 0 for w in self.receiver_widths):
            raise ValueError(
                f"field_feature_widths must be a non-empty list of positive widths (Å), got {self.receiver_widths!r}"
            )
        if self.backend not in ELECTROSTATICS_BACKENDS:
            raise ValueError(
                f"electrostatics backend must be one of {ELECTROSTATICS_BACKENDS}, got {self.backend!r}"
            )
        if self.ewald_split_width is not None and not self.ewald_split_width > 0:
            raise ValueError(f"ewald_split_width must be None or > 0 Å, got {self.ewald_split_width!r}")
        if not self.kspace_cutoff_factor > 0:
            raise ValueError(f"kspace_cutoff_factor must be > 0, got {self.kspace_cutoff_factor!r}")
        if self.kspace_method not in KSPACE_METHODS:
            raise ValueError(f"kspace_method must be one of {KSPACE_METHODS}, got {self.kspace_method!r}")
        if self.kspace_method == "pme" and self.max_l > 1:
            raise ValueError(
                f"kspace_method 'pme' handles multipoles and field features up to l = 1, got atomic_multipoles_max_l "
                f"{self.multipole_max_l} and field_feature_max_l {self.feature_max_l}: use 'ewald' or 'auto'"
            )
        if self.kspace_method == "pme" and (self.ewald_split_width is not None or self.backend != "torch"):
            raise ValueError("kspace_method 'pme' is the torch backend without an Ewald split: set "
                             "ewald_split_width: null and electrostatics_backend: torch, or use 'ewald'")

    @property
    def periodic_method(self) -> str:
        """``pme`` or ``ewald``: what periodic structures use (``auto`` resolved)."""
        if self.kspace_method != "auto":
            return self.kspace_method
        usable = self.max_l <= 1 and self.ewald_split_width is None and self.backend == "torch"
        return "pme" if usable else "ewald"

    @property
    def max_l(self) -> int:
        """Highest l over the density and the receivers (the width of the projections)."""
        return max(self.multipole_max_l, self.feature_max_l)

    @property
    def k_cutoff(self) -> float:
        """Reciprocal-space cutoff (Å⁻¹)."""
        split = self.ewald_split_width or 0.0
        return self.kspace_cutoff_factor / math.sqrt(min(self.smearing_width, *self.receiver_widths) ** 2 + split**2)

    @property
    def real_space_cutoff(self) -> float:
        """Real-space cutoff (Å) of the Ewald-split short-range sum (0 without a split)."""
        if self.ewald_split_width is None:
            return 0.0
        widest = math.sqrt(self.smearing_width**2 + max(self.smearing_width, *self.receiver_widths) ** 2)
        return self.kspace_cutoff_factor * math.sqrt(widest**2 + self.ewald_split_width**2)


@dataclass
class ElectrostaticGeometry:
    """Geometry-dependent data reused at every SCF step (see :meth:`GaussianMultipoleElectrostatics.prepare`)."""

    positions: torch.Tensor
    cell: torch.Tensor
    batch: torch.Tensor
    num_graphs: int
    boundary: list[str]
    pairs: PairGeometry | None
    reciprocal: list[ReciprocalGeometry | None]
    short_range: PairGeometry | None
    meshes: list[MeshGeometry | None]
    atom_slices: list[tuple[int, int]]


def resolve_boundary(pbc: list[bool], method: str, index: int) -> str:
    """Boundary mode of one structure from its pbc and the model's ``electrostatic_pbc_method``.

    method: ``auto`` (open if no periodic direction, slab if pbc = (T, T, F), periodic if all),
    ``realspace`` (open boundaries, only for structures without periodic directions), ``pbc``
    (periodic, needs pbc all True) or ``slab``.
    """
    if method == "auto":
        if not any(pbc):
            return "open"
        if all(pbc):
            return "periodic"
        if pbc == [True, True, False]:
            return "slab"
        raise ValueError(
            f"structure {index}: pbc = {pbc} is not supported; use (F, F, F) for molecules, "
            "(T, T, T) for bulk or (T, T, F) for slabs with vacuum along the third cell vector"
        )
    if method == "realspace":
        if any(pbc):
            raise ValueError(
                f"structure {index}: electrostatic_pbc_method='realspace' treats structures as "
                f"isolated, but pbc = {pbc}; set atoms.pbc = False or use 'pbc'/'slab'/'auto'"
            )
        return "open"
    if method == "pbc":
        if not all(pbc):
            raise ValueError(
                f"structure {index}: electrostatic_pbc_method='pbc' needs a fully periodic cell, "
                f"got pbc = {pbc}; use 'realspace' or 'auto' for molecules, 'slab' for slabs"
            )
        return "periodic"
    if method == "slab":
        return "slab"
    raise ValueError(
        f"electrostatic_pbc_method must be one of 'realspace', 'pbc', 'slab', 'auto', got {method!r}"
    )


class GaussianMultipoleElectrostatics(torch.nn.Module):
    """Hartree energy and potential projections of Gaussian multipoles (open, periodic, slab)."""

    def __init__(self, config: ElectrostaticsConfig) -> None:
        super().__init__()
        self.config = config
        sigma = config.smearing_width
        widths = torch.tensor([sigma, *config.receiver_widths], dtype=torch.float64)
        self.register_buffer("receiver_widths", widths, persistent=False)
        self.register_buffer("interaction_widths", torch.sqrt(sigma**2 + widths**2), persistent=False)
        self.register_buffer("quadrupole_matrices", quadrupole_basis_matrices(), persistent=False)
        split = config.ewald_split_width or 0.0
        self.register_buffer(
            "split_widths", torch.sqrt(self.interaction_widths**2 + split**2), persistent=False
        )
        self.radial_order = required_radial_order(config.multipole_max_l, config.max_l)

    @property
    def num_channels(self) -> int:
        """1 + number of receiver widths."""
        return int(self.receiver_widths.shape[0])

    def prepare(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        batch: torch.Tensor,
        boundary: list[str],
    ) -> ElectrostaticGeometry:
        """Geometry-only quantities. positions (N, 3) Å, cell (B, 3, 3) Å, batch (N,), one mode per structure."""
        num_graphs = len(boundary)
        dtype = positions.dtype
        counts = torch.bincount(batch, minlength=num_graphs).tolist()
        starts = [sum(counts[:b]) for b in range(num_graphs)]
        slices = [(s, s + c) for s, c in zip(starts, counts)]
        open_mask = torch.tensor([m == "open" for m in boundary], device=batch.device)
        pairs = None
        if bool(open_mask.any()):
            pair_index = all_pairs(batch, num_graphs)
            pair_index = pair_index[:, open_mask[batch[pair_index[0]]]]
            pairs = prepare_pairs(
                positions,
                pair_index,
                self.interaction_widths.to(dtype),
                self.radial_order,
                self.config.coulomb_constant,
            )
        reciprocal: list[ReciprocalGeometry | None] = []
        meshes: list[MeshGeometry | None] = []
        short_pairs: list[torch.Tensor] = []
        short_separations: list[torch.Tensor] = []
        for b, mode in enumerate(boundary):
            if mode not in BOUNDARY_MODES:
                raise ValueError(f"boundary mode must be one of {BOUNDARY_MODES}, got {mode!r}")
            if mode == "open":
                reciprocal.append(None)
                meshes.append(None)
                continue
            start, stop = slices[b]
            if self.config.backend == "nvalchemi":
                reciprocal.append(None)
                meshes.append(None)
                continue
            if self.config.periodic_method == "pme":  # one spread + FFT + gather per potential
                shape = grid_shape(cell[b].detach(), MESH_SPACING_FACTOR * float(self.interaction_widths.min()))
                meshes.append(prepare_mesh(
                    positions[start:stop], cell[b], shape, SPLINE_ORDER, self.interaction_widths.to(dtype),
                    self.config.coulomb_constant,
                ))
                reciprocal.append(None)
                continue
            meshes.append(None)
            miller = half_space_miller_indices(cell[b], self.config.k_cutoff)
            recip = prepare_reciprocal(
                positions[start:stop],
                cell[b],
                miller,
                self.config.smearing_width,
                self.receiver_widths.to(dtype),
                self.quadrupole_matrices.to(dtype) if self.config.max_l >= 2 else None,
                self.config.coulomb_constant,
            )
            if self.config.ewald_split_width is not None:
                recip = recip._replace(green=recip.green * torch.exp(-0.5 * self.config.ewald_split_width**2 * recip.k2))
                pair_index, separation = self._short_range_pairs(positions[start:stop], cell[b], mode)
                short_pairs.append(pair_index + start)
                short_separations.append(separation)
            reciprocal.append(recip)
        short_range = None
        if short_pairs:
            pair_index = torch.cat(short_pairs, dim=1)
            separation = torch.cat(short_separations)
            distance_squared = (separation * separation).sum(-1)[:, None]
            radial = smeared_coulomb_radial_functions(
                distance_squared, self.interaction_widths.to(dtype)[None], self.radial_order, self.config.coulomb_constant
            ) - smeared_coulomb_radial_functions(
                distance_squared, self.split_widths.to(dtype)[None], self.radial_order, self.config.coulomb_constant
            )
            short_range = PairGeometry(pairs=pair_index, separation=separation, radial=radial)
        return ElectrostaticGeometry(
            positions=positions,
            cell=cell,
            batch=batch,
            num_graphs=num_graphs,
            boundary=list(boundary),
            pairs=pairs,
            reciprocal=reciprocal,
            meshes=meshes,
            short_range=short_range,
            atom_slices=slices,
        )

    def _short_range_pairs(
        self, positions: torch.Tensor, cell: torch.Tensor, mode: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs (receiver, source) (2, P) within the real-space cutoff, with separations (P, 3)
        ``r_receiver − r_source_image`` (differentiable in positions and cell)."""
        from fpscf.data.neighbors import neighbor_list

        pbc = torch.tensor([True, True, mode != "slab"])
        edge_index, unit_shifts = neighbor_list(
            positions.detach(), cell.detach(), pbc, self.config.real_space_cutoff
        )
        sender, receiver = edge_index
        separation = positions[receiver] - positions[sender] + unit_shifts.to(positions.dtype) @ cell
        return torch.stack([receiver, sender]), separation

    def _to_features(
        self, v0: torch.Tensor, v1: torch.Tensor | None, v2: torch.Tensor | None
    ) -> torch.Tensor:
        """Stack V0 (N, W), V1 (N, W, 3), V2 (N, W, 3, 3) into (N, W, (L+1)²)."""
        return stack_features(v0, v1, v2, self.quadrupole_matrices)

    def self_potential(
        self,
        multipoles: torch.Tensor,
        widths: torch.Tensor | None = None,
        subtract_widths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Each atom's projection of its own potential, (N, 1 + W, (L+1)²), for kernel widths
        ``widths`` (default: the interaction widths), minus that of ``subtract_widths`` if given."""
        widths = self.interaction_widths if widths is None else widths
        radial = self_radial_functions(widths.to(multipoles.dtype), self.radial_order, self.config.coulomb_constant)
        if subtract_widths is not None:
            radial = radial - self_radial_functions(
                subtract_widths.to(multipoles.dtype), self.radial_order, self.config.coulomb_constant
            )
        return self_features(multipoles, radial, self.quadrupole_matrices, self.config.max_l)

    def potential(self, geometry: ElectrostaticGeometry, multipoles: torch.Tensor) -> torch.Tensor:
        """Hartree potential projections (N, 1 + W, (L+1)²) of the density with coefficients
        ``multipoles`` (N, (l_max+1)²); self-interaction per the config flags."""
        expected = num_multipole_coefficients(self.config.multipole_max_l)
        if multipoles.shape != (geometry.positions.shape[0], expected):
            raise ValueError(
                f"multipoles must have shape (N, {expected}) = ({geometry.positions.shape[0]}, {expected}), "
                f"got {tuple(multipoles.shape)}"
            )
        n_atoms = multipoles.shape[0]
        width = (self.config.max_l + 1) ** 2
        total = multipoles.new_zeros(n_atoms, self.num_channels, width)
        # Real-space pair sums: all pairs of open structures, short-range pairs of Ewald-split ones.
        pair_geometries = [g for g in (geometry.pairs, geometry.short_range) if g is not None]
        if pair_geometries:
            charges, dipoles, quadrupoles = split_multipoles(
                multipoles, self.quadrupole_matrices.to(multipoles.dtype)
            )
            for pair_geometry in pair_geometries:
                v0, v1, v2 = pair_potential_derivatives(
                    pair_geometry, charges, dipoles, quadrupoles, self.config.max_l, n_atoms
                )
                total = total + self._to_features(v0, v1, v2)
        self_part = self.self_potential(multipoles)
        # Reciprocal sums contain the self term; pair sums do not.
        periodic_atoms = torch.zeros(n_atoms, dtype=torch.bool, device=multipoles.device)
        pieces = []
        for b, recip in enumerate(geometry.reciprocal):
            if geometry.boundary[b] == "open":
                continue
            start, stop = geometry.atom_slices[b]
            periodic_atoms[start:stop] = True
            local = multipoles[start:stop]
            mesh = geometry.meshes[b]
            if mesh is not None:
                features = mesh_potential_features(mesh, spread(mesh, local), self.config.max_l)
            elif recip is None:
                features = nvalchemi_periodic_features(
                    geometry.positions[start:stop],
                    geometry.cell[b],
                    local,
                    self.config.smearing_width,
                    self.receiver_widths.tolist(),
                    self.config.k_cutoff,
                    self.config.max_l,
                    self.config.coulomb_constant,
                )
            else:
                real, imag = structure_factor(recip, local)
                features = reciprocal_potential_features(recip, real, imag, self.config.max_l)
                if self.config.ewald_split_width is not None:
                    features = features + self.self_potential(
                        local, self.interaction_widths, subtract_widths=self.split_widths
                    )
            if geometry.boundary[b] == "slab":
                features = features + slab_correction_features(
                    geometry.positions[start:stop],
                    geometry.cell[b],
                    local,
                    self.config.smearing_width,
                    self.receiver_widths.to(local.dtype),
                    self.config.max_l,
                    self.quadrupole_matrices.to(local.dtype),
                    self.config.coulomb_constant,
                )
            pieces.append((start, stop, features))
        for start, stop, feats in pieces:
            total = total + torch.nn.functional.pad(feats, (0, 0, 0, 0, start, n_atoms - stop))
        keep_self = torch.tensor(
            [self.config.include_self_interaction]
            + [self.config.include_field_self_interaction] * (self.num_channels - 1),
            device=multipoles.device,
        )
        # open atoms: add self where kept; periodic atoms: subtract self where not kept.
        add = keep_self[None, :, None] & ~periodic_atoms[:, None, None]
        remove = ~keep_self[None, :, None] & periodic_atoms[:, None, None]
        return total + self_part * add.to(self_part.dtype) - self_part * remove.to(self_part.dtype)

    def hartree_energy(
        self, multipoles: torch.Tensor, potential: torch.Tensor, batch: torch.Tensor, num_graphs: int
    ) -> torch.Tensor:
        """``½ Σ_i p_i · f_i,0`` per structure (B,) eV, from :meth:`potential`'s output."""
        width = multipoles.shape[-1]
        per_atom = 0.5 * (multipoles * potential[:, 0, :width]).sum(-1)
        return per_atom.new_zeros(num_graphs).index_add(0, batch, per_atom)

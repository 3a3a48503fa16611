"""The deployed model: a FixedPointModel with its SCF loop, written for TorchScript and MPI.

:class:`DeployedModel` obeys the ``pair_style fpscf`` contract (lammps_plugin/README.md). One call
takes a rank's owned atoms and their ghosts and returns energies, forces, virials and charges of
the converged density. The work splits as in docs/contributing.md, The deployable model and LAMMPS:

* local (owned + ghost atoms): encoder, local density, update rule, readouts;
* global, summed over ranks with ``fpscf::allreduce_sum`` (:mod:`fpscf.export.comm`): the
  structure factor ``S(k)`` of a periodic cell (one all-reduce per SCF step), the total charge and
  its slope for the Fermi level, and the dot products of Anderson mixing and GMRES. Open
  boundaries gather every rank's positions and multipoles instead (small clusters).

Forces are exact: after the SCF converges, the adjoint ``(I − ∂F/∂x)ᵀ λ = ∂E/∂x`` of the
augmented map ``x = (p, μ)`` is solved by GMRES and the forces and virial are one backward pass of
``E + λ·F(x*)`` at fixed ``x*``, ``λ`` (the same implicit derivative as the Python model).

Needs a one-body update and a field readout without edges; the density is warm-started from the
``state`` input (the previous step's multipoles and Fermi level, NaN rows for atoms without one).
"""

import copy
import math
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch

from fpscf.domain import CHARGE_TOLERANCE, DISTANCE_TOLERANCE, MAX_ENERGY_PER_ATOM, deployed_domain
from fpscf.electrostatics.applied_field import applied_field_features, bond_midpoint_coordinates
from fpscf.electrostatics.kernels import self_radial_functions, smeared_coulomb_radial_functions
from fpscf.electrostatics.mesh import (
    MeshGeometry,
    detach_mesh,
    grid_shape,
    mesh_potential_features,
    prepare_mesh,
    spread,
)
from fpscf.electrostatics.multipoles import split_multipoles
from fpscf.electrostatics.pair_fields import (
    potential_derivatives,
    required_radial_order,
    self_features,
    stack_features,
)
from fpscf.electrostatics.reciprocal import (
    ReciprocalGeometry,
    detach_reciprocal,
    half_space_miller_indices,
    prepare_reciprocal,
    reciprocal_potential_features,
    structure_factor,
)
from fpscf.export import comm  # noqa: F401  (registers the fpscf:: operators)
from fpscf.errors import FpscfError
from fpscf.scf.readouts import NullFieldReadout, OneBodyMLPFieldReadout, StrictQuadraticFieldEnergyReadout
from fpscf.scf.settings import SCFSettings
from fpscf.scf.updates import OneBodyVariableUpdate

FERMI_NEWTON_STEPS = 2
#: Periodic electrostatics: ``ewald`` sums the k-vectors directly (exact, O(N K)); ``pme`` uses a
#: smooth particle mesh (O(N p³ + M log M), relative error ~1e-8 at the default mesh); ``auto``
#: (the default of :func:`deploy`) is ``pme`` where it applies (multipoles and features up to l = 1).
KSPACE_METHODS = ("ewald", "pme")


def resolve_kspace(model: torch.nn.Module, kspace: str) -> str:
    """``auto`` → ``pme`` for models with multipoles and field features up to l = 1, else ``ewald``."""
    if kspace != "auto":
        return kspace
    config = model.config
    return "pme" if max(config.atomic_multipoles_max_l, config.field_feature_max_l) <= 1 else "ewald"


class ExportError(FpscfError, ValueError):
    """The model cannot be exported as it is; the message says what to change."""


class Geometry(NamedTuple):
    """What the electrostatics of one evaluation need: periodic or open; the reciprocal (``ewald``)
    or mesh (``pme``) geometry of a periodic cell; for open boundaries the pairs (receiver row,
    source index in the gathered atoms, separation (P, 3) Å, radial kernels (P, C, n)); this rank's
    offset and the total number of atoms in rank order."""

    periodic: bool
    recip: Optional[ReciprocalGeometry]
    mesh: Optional[MeshGeometry]
    pairs: Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    offset: int
    total: int


class NodeContext(NamedTuple):
    """What the SCF map reads besides (p, μ): the local density (n, K), invariant and equivariant
    node features of the owned atoms, and the (empty) edges a one-body update ignores."""

    local: torch.Tensor
    scalars: torch.Tensor
    feats: torch.Tensor
    no_edges: Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class _NoHigherMultipoles(torch.nn.Module):
    """Stands in for ``local_higher`` of a charges-only local density."""

    def forward(self, node_feats: torch.Tensor) -> torch.Tensor:
        return node_feats.new_zeros(node_feats.shape[0], 0)


class _NoRepulsion(torch.nn.Module):
    """Stands in for the short-range repulsion of a model built without one."""

    def forward(
        self, vectors: torch.Tensor, species: torch.Tensor, senders: torch.Tensor, receivers: torch.Tensor, num_nodes: int
    ) -> torch.Tensor:
        return vectors.new_zeros(num_nodes)


class DeployedModel(torch.nn.Module):
    """TorchScript-ready fixed-point model for ``pair_style fpscf``. Build with :func:`deploy`."""

    # contract attributes (read by the pair style)
    r_max: float
    species_symbols: List[str]
    periodic_only: bool
    num_interactions: int
    has_centroid_virial: bool
    ghost_exchange: bool
    exchange_width: int
    state_size: int
    scf_tolerance: float
    max_scf_steps: int
    total_charge: float
    # SCF and linear-solve settings
    charge_tolerance: float
    mixing_parameter: float
    anderson_history: int
    divergence_factor: float
    fermi_newton_steps: int
    linear_rtol: float
    linear_max_iterations: int
    linear_restart: int
    # model constants
    boundary_method: str
    num_coefficients: int
    local_l: int
    max_l: int
    feature_max_l: int
    radial_order: int
    smearing_width: float
    k_cutoff: float
    coulomb_constant: float
    strict_readout: bool
    kspace: str
    mesh_spacing: float
    spline_order: int
    layer_scalar_counts: List[int]
    bond_midpoints: bool
    bond_on: float
    bond_off: float

    def __init__(
        self,
        model: torch.nn.Module,
        settings: SCFSettings,
        total_charge: float = 0.0,
        kspace: str = "ewald",
        mesh_spacing: Optional[float] = None,
        spline_order: int = 8,
    ) -> None:
        super().__init__()
        from ase.data import chemical_symbols

        config = model.config
        check_exportable(model, kspace)
        if spline_order not in (4, 6, 8, 10):
            raise ExportError(f"spline_order must be 4, 6, 8 or 10 (even), got {spline_order!r}")
        if mesh_spacing is not None and not mesh_spacing > 0:
            raise ExportError(f"mesh_spacing must be > 0 Å, got {mesh_spacing!r}")
        electrostatics = model.electrostatics
        ecfg = electrostatics.config
        self.r_max = float(config.r_max)
        self.species_symbols = [chemical_symbols[int(z)] for z in config.atomic_numbers]
        self.boundary_method = str(config.electrostatic_pbc_method)
        self.periodic_only = self.boundary_method == "pbc"
        self.num_interactions = int(config.num_interactions)
        self.has_centroid_virial = True
        # node features of ghosts come from their owners after every interaction layer, so only
        # owned atoms receive messages and ghosts are needed within r_max only
        self.ghost_exchange = True
        self.exchange_width = int(max(irreps.dim for irreps in model.encoder.irreps_out))
        self.num_coefficients = int(model.num_coefficients)
        # per atom: converged multipoles p (K), Fermi level μ, adjoint λ_p (K), λ_μ (warm starts)
        self.state_size = 2 * self.num_coefficients + 2
        self.scf_tolerance = float(settings.tolerance)
        self.max_scf_steps = int(settings.max_steps)
        self.total_charge = float(total_charge)
        self.charge_tolerance = float(settings.charge_tolerance)
        self.mixing_parameter = float(settings.mixing_parameter)
        self.anderson_history = int(settings.history) if settings.mixing == "anderson" else 0
        self.divergence_factor = float(settings.divergence_factor)
        self.fermi_newton_steps = FERMI_NEWTON_STEPS
        self.linear_rtol = 1e-10
        self.linear_max_iterations = 400
        self.linear_restart = 50

        self.local_l = int(model.local_l)
        self.max_l = int(ecfg.max_l)
        self.feature_max_l = int(ecfg.feature_max_l)
        self.radial_order = int(required_radial_order(ecfg.multipole_max_l, ecfg.max_l))
        self.smearing_width = float(ecfg.smearing_width)
        self.k_cutoff = float(ecfg.k_cutoff)
        self.coulomb_constant = float(ecfg.coulomb_constant)
        self.layer_scalar_counts = [int(n) for n in model.layer_scalar_counts]
        self.strict_readout = isinstance(model.field_readout, StrictQuadraticFieldEnergyReadout)
        self.kspace = kspace
        narrowest = float(electrostatics.interaction_widths.min())
        self.mesh_spacing = float(mesh_spacing) if mesh_spacing is not None else 0.35 * narrowest
        self.spline_order = int(spline_order)
        # periodic boxes: the charges meet the field at their bond-midpoint coordinates (applied_field.py)
        self.bond_midpoints = str(config.field_coupling) == "bond_midpoints"
        bond_range = config.field_coupling_bond_range if self.bond_midpoints else (0.0, 0.0)
        self.bond_on = float(bond_range[0])
        self.bond_off = float(bond_range[1])

        self.encoder = copy.deepcopy(model.encoder)
        self.local_energy = copy.deepcopy(model.local_energy)
        self.local_charges = copy.deepcopy(model.local_charges)
        self.local_higher = copy.deepcopy(model.local_higher) if model.local_higher is not None else _NoHigherMultipoles()
        self.update = copy.deepcopy(model.update)
        self.field_readout = copy.deepcopy(model.field_readout)
        self.repulsion = copy.deepcopy(model.repulsion) if model.repulsion is not None else _NoRepulsion()
        self.local_bound = copy.deepcopy(model.local_bound)
        dtype = torch.float64
        self.register_buffer("atomic_energies", model.atomic_energies.detach().to(dtype).clone())
        self.register_buffer("density_scaling", model.density_scaling.detach().to(dtype).clone())
        self.register_buffer("feature_norms", model.feature_norms.detach().to(dtype).clone())
        self.register_buffer("receiver_widths", electrostatics.receiver_widths.detach().to(dtype).clone())
        self.register_buffer("interaction_widths", electrostatics.interaction_widths.detach().to(dtype).clone())
        self.register_buffer("quadrupole_matrices", electrostatics.quadrupole_matrices.detach().to(dtype).clone())
        # self-interaction: R = 0 kernels, and per channel whether an atom's own density is kept
        self.register_buffer(
            "self_radial", self_radial_functions(self.interaction_widths, self.radial_order, self.coulomb_constant)
        )
        keep = [ecfg.include_self_interaction] + [ecfg.include_field_self_interaction] * len(ecfg.receiver_widths)
        self.register_buffer("keep_self", torch.tensor([float(flag) for flag in keep], dtype=dtype)[None, :, None])
        norms = [self.feature_norms[:, l : l + 1].expand(-1, 2 * l + 1) for l in range(self.feature_max_l + 1)]
        self.register_buffer("feature_scale", torch.cat(norms, dim=-1).clone())
        # training domain (fpscf.domain): the "domain" output of every call, reported by the pair style
        domain = deployed_domain(getattr(model, "training_domain", None), config.atomic_numbers)
        self.has_training_domain = bool(domain.present)
        self.domain_distance_tolerance = float(DISTANCE_TOLERANCE)
        self.domain_charge_tolerance = float(CHARGE_TOLERANCE)
        self.training_max_field = float(domain.max_field)
        self.domain_field_limit = float(domain.field_limit)
        self.max_energy_per_atom = float(MAX_ENERGY_PER_ATOM)
        self.register_buffer("training_min_distances", domain.min_distances.to(dtype).clone())  # (S, S) Å
        self.register_buffer("training_max_charges", domain.max_charges.to(dtype).clone())  # (S,) e
        self.to(dtype)

    # ------------------------------------------------------------------ electrostatics
    def _self_correction(self, multipoles: torch.Tensor, periodic: bool) -> torch.Tensor:
        """What to add to the pair (open) or reciprocal (periodic) sum for the self-interaction flags:
        the reciprocal sum contains every atom's own density, the pair sum does not."""
        weight = self.keep_self - 1.0 if periodic else self.keep_self
        return self_features(multipoles, self.self_radial, self.quadrupole_matrices, self.max_l) * weight

    def _gather_rows(self, rows: torch.Tensor, offset: int, total: int) -> torch.Tensor:
        """Every rank's ``rows`` (n_local, ...) stacked in rank order (total, ...), differentiably."""
        padded = rows.new_zeros([total] + rows.shape[1:])
        padded = padded.index_copy(0, torch.arange(offset, offset + rows.shape[0], device=rows.device), rows)
        return self._global_sum(padded)

    def _potential(
        self,
        multipoles: torch.Tensor,
        geometry: Geometry,
    ) -> torch.Tensor:
        """Hartree potential projections (n_local, 1+W, (L+1)²) of the whole density at the owned atoms."""
        mesh = geometry.mesh
        recip = geometry.recip
        if geometry.periodic and mesh is not None:
            density = self._global_sum(spread(mesh, multipoles))
            features = mesh_potential_features(mesh, density, self.max_l)
        elif geometry.periodic:
            assert recip is not None
            real, imag = structure_factor(recip, multipoles)
            summed = self._global_sum(torch.stack([real, imag]))
            features = reciprocal_potential_features(recip, summed[0], summed[1], self.max_l)
        else:
            receiver_rows, sources, separation, radial = geometry.pairs
            gathered = self._gather_rows(multipoles, geometry.offset, geometry.total)[sources]
            charges, dipoles, quadrupoles = split_multipoles(gathered, self.quadrupole_matrices)
            v0, v1, v2 = potential_derivatives(separation, radial, charges, dipoles, quadrupoles, self.max_l)
            pair_features = stack_features(v0, v1, v2, self.quadrupole_matrices)
            features = pair_features.new_zeros([multipoles.shape[0]] + pair_features.shape[1:])
            features = features.index_add(0, receiver_rows, pair_features)
        return features + self._self_correction(multipoles, geometry.periodic)

    # ------------------------------------------------------------------ SCF map
    def _response(
        self,
        base: torch.Tensor,
        mu: torch.Tensor,
        nodes: NodeContext,
    ) -> torch.Tensor:
        """G(p, μ) from the potential features ``base`` (n, W, (L_f+1)²) and μ (1,) V."""
        return nodes.local + self.update(nodes.scalars, nodes.feats, self._update_features(base, mu), nodes.no_edges)

    def _update_features(self, base: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """What the update and readout read: ``base`` with μ added to the l = 0 potentials, normalised."""
        shift = torch.zeros_like(base)
        shift[:, :, 0] = mu
        return (base + shift) / self.feature_scale

    def _base_features(
        self,
        multipoles: torch.Tensor,
        external: torch.Tensor,
        geometry: Geometry,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        size_f = (self.feature_max_l + 1) * (self.feature_max_l + 1)
        hartree = self._potential(multipoles, geometry)
        return hartree, hartree[:, 1:, :size_f] + external[:, :, :size_f]

    def _global_sum(self, value: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over MPI ranks (its derivative is the same sum)."""
        return torch.ops.fpscf.allreduce_sum(value)

    def _or_zeros(self, gradient: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """An autograd result, or zeros shaped like its input when it did not depend on it."""
        return gradient if gradient is not None else torch.zeros_like(like)

    def _solve_mu(
        self,
        base: torch.Tensor,
        mu: torch.Tensor,
        nodes: NodeContext,
    ) -> torch.Tensor:
        """Newton steps on Σq(μ) = Q over all ranks (values only)."""
        for _ in range(self.fermi_newton_steps):
            mu_var = mu.detach().requires_grad_(True)
            q = self._response(base, mu_var, nodes)[:, 0].sum()
            slope_local = self._or_zeros(torch.autograd.grad([q], [mu_var], allow_unused=True)[0], mu)
            both = self._global_sum(torch.cat([q.detach().reshape(1), slope_local.detach().reshape(1)]))
            mu = (mu - (both[0] - self.total_charge) / both[1]).detach()
        return mu

    def _scientific(self, value: float) -> str:
        """``value`` as ``d.ddde±x`` (TorchScript's format() has no format specs)."""
        if value == 0.0 or not math.isfinite(value):
            return str(value)
        exponent = int(math.floor(math.log10(abs(value))))
        digits = int(round(abs(value) / 10.0**exponent * 1000.0))
        if digits >= 10000:
            digits, exponent = digits // 10, exponent + 1
        fraction = str(1000 + digits % 1000)[1:]  # three digits with leading zeros
        sign = "-" if value < 0 else ""
        return sign + str(digits // 1000) + "." + fraction + "e" + str(exponent)

    def _history_text(self, history: List[float]) -> str:
        if len(history) <= 12:
            return ", ".join([self._scientific(r) for r in history])
        head = ", ".join([self._scientific(r) for r in history[:4]])
        return head + ", …, " + ", ".join([self._scientific(r) for r in history[-7:]])

    def _scf(
        self,
        p0: torch.Tensor,
        mu0: torch.Tensor,
        external: torch.Tensor,
        geometry: Geometry,
        nodes: NodeContext,
    ) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """Anderson-mixed SCF on every rank in step (all decisions use global quantities)."""
        x = p0.detach().clone()
        mu = mu0.detach().clone()
        xs: List[torch.Tensor] = []
        rs: List[torch.Tensor] = []
        history: List[float] = []
        best = math.inf
        for step in range(1, self.max_scf_steps + 1):
            _, base = self._base_features(x, external, geometry)
            base = base.detach()
            mu = self._solve_mu(base, mu, nodes)
            gx = self._response(base, mu, nodes).detach()
            residual = gx - x
            local_max = residual.abs().max() if residual.numel() > 0 else residual.new_zeros(())
            charge = self._global_sum(gx[:, 0].sum().reshape(1))[0] - self.total_charge
            both = torch.ops.fpscf.allreduce_max(torch.stack([local_max, charge.abs()]))
            norm = float(both[0])
            history.append(norm)
            if not math.isfinite(norm):
                raise RuntimeError(
                    "fpscf: the SCF produced a non-finite density after " + str(step) + " steps; residual history "
                    "(max |G(p) - p|): [" + self._history_text(history) + "]"
                )
            if norm < self.scf_tolerance and float(both[1]) < self.charge_tolerance:
                return gx, mu, step
            best = min(best, norm)
            if norm > self.divergence_factor * max(best, self.scf_tolerance):
                break
            if self.anderson_history == 0:
                x = x + self.mixing_parameter * residual
                continue
            xs.append(x.reshape(-1).clone())
            rs.append(residual.reshape(-1).clone())
            if len(xs) > self.anderson_history + 1:
                xs.pop(0)
                rs.pop(0)
            x = self._anderson_step(xs, rs).reshape(x.shape)
        raise RuntimeError(
            "fpscf: the SCF did not converge in " + str(len(history)) + " steps (scf_tol "
            + self._scientific(self.scf_tolerance) + "); residual history (max |G(p) - p|): ["
            + self._history_text(history) + "]. Try a larger max_scf, check the structure for "
            "overlapping atoms, or a smaller time step"
        )

    def _anderson_step(self, xs: List[torch.Tensor], rs: List[torch.Tensor]) -> torch.Tensor:
        x, r = xs[-1], rs[-1]
        beta = self.mixing_parameter
        if len(xs) == 1:
            return x + beta * r
        dx = torch.stack([xs[i + 1] - xs[i] for i in range(len(xs) - 1)], dim=1)
        dr = torch.stack([rs[i + 1] - rs[i] for i in range(len(rs) - 1)], dim=1)
        m = dr.shape[1]
        summed = self._global_sum(torch.cat([(dr.T @ dr).reshape(-1), dr.T @ r]))
        gram = summed[: m * m].reshape(m, m)
        rhs = summed[m * m :]
        regulariser = 1e-12 * torch.trace(gram).clamp_min(1e-300) * torch.eye(m, dtype=gram.dtype, device=gram.device)
        gamma = torch.linalg.solve(gram + regulariser, rhs)
        return x + beta * r - (dx + beta * dr) @ gamma

    # ------------------------------------------------------------------ adjoint
    def _dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Global inner product of (p-part on this rank, μ replicated as the last entry)."""
        return self._global_sum((a[:-1] * b[:-1]).sum().reshape(1))[0] + a[-1] * b[-1]

    def _adjoint_operator(
        self, v: torch.Tensor, g_map: torch.Tensor, p_var: torch.Tensor, mu_var: torch.Tensor, slope: torch.Tensor
    ) -> torch.Tensor:
        """``(I − Jᵀ) v`` for the augmented map ``F(p, μ) = (G(p, μ), μ − (ΣG_q − Q)/s)``."""
        n = p_var.numel()
        lam_p = v[:n].reshape(p_var.shape)
        lam_mu = v[n]
        cotangent = lam_p.clone()
        cotangent[:, 0] = cotangent[:, 0] - lam_mu / slope
        cotangents: List[Optional[torch.Tensor]] = [cotangent]
        grads = torch.autograd.grad([g_map], [p_var, mu_var], cotangents, retain_graph=True, allow_unused=True)
        jp = self._or_zeros(grads[0], p_var)
        jmu = self._or_zeros(grads[1], mu_var)
        jmu_total = self._global_sum(jmu.reshape(1))[0] + lam_mu
        return v - torch.cat([jp.reshape(-1), jmu_total.reshape(1)])

    def _gmres(
        self,
        rhs: torch.Tensor,
        g_map: torch.Tensor,
        p_var: torch.Tensor,
        mu_var: torch.Tensor,
        slope: torch.Tensor,
        initial: torch.Tensor,
    ) -> Tuple[torch.Tensor, int]:
        """Restarted GMRES for ``(I − Jᵀ) λ = rhs`` from ``initial``, with global inner products.
        Returns λ and the number of operator products."""
        x = initial.clone()
        b_norm = float(torch.sqrt(self._dot(rhs, rhs)))
        if b_norm == 0.0:
            return torch.zeros_like(rhs), 0
        used = 0
        while used < self.linear_max_iterations:
            r = rhs - self._adjoint_operator(x, g_map, p_var, mu_var, slope)
            beta = float(torch.sqrt(self._dot(r, r)))
            if beta / b_norm < self.linear_rtol:
                return x, used
            basis: List[torch.Tensor] = [r / beta]
            m = min(self.linear_restart, self.linear_max_iterations - used)
            h = torch.zeros(m + 1, m, dtype=rhs.dtype, device=rhs.device)
            k_done = 0
            for k in range(m):
                w = self._adjoint_operator(basis[k], g_map, p_var, mu_var, slope)
                used += 1
                for j in range(k + 1):
                    h[j, k] = self._dot(w, basis[j])
                    w = w - h[j, k] * basis[j]
                h[k + 1, k] = torch.sqrt(self._dot(w, w))
                k_done = k + 1
                e1 = torch.zeros(k + 2, dtype=rhs.dtype, device=rhs.device)
                e1[0] = beta
                y = torch.linalg.lstsq(h[: k + 2, : k + 1], e1.unsqueeze(-1)).solution.squeeze(-1)
                estimate = float(torch.linalg.norm(h[: k + 2, : k + 1] @ y - e1)) / b_norm
                if estimate < self.linear_rtol or float(h[k + 1, k]) < 1e-300:
                    break
                basis.append(w / h[k + 1, k])
            e1 = torch.zeros(k_done + 1, dtype=rhs.dtype, device=rhs.device)
            e1[0] = beta
            y = torch.linalg.lstsq(h[: k_done + 1, :k_done], e1.unsqueeze(-1)).solution.squeeze(-1)
            x = x + torch.stack(basis[:k_done], dim=1) @ y
        r = rhs - self._adjoint_operator(x, g_map, p_var, mu_var, slope)
        final = float(torch.sqrt(self._dot(r, r))) / b_norm
        if final < 1e3 * self.linear_rtol:
            return x, used
        raise RuntimeError(
            "fpscf: GMRES for the force adjoint did not converge in " + str(used) + " products (relative residual "
            + self._scientific(final) + ", tolerance " + self._scientific(self.linear_rtol) + ")"
        )

    # ------------------------------------------------------------------ training domain
    def _domain_values(
        self,
        vectors: torch.Tensor,
        receivers: torch.Tensor,
        senders: torch.Tensor,
        species: torch.Tensor,
        n_local: int,
        charges: torch.Tensor,
    ) -> torch.Tensor:
        """This rank's distance from the training domain (7,): over edges with an owned receiver the
        smallest ratio distance / shortest distance of its species pair in training (inf: none), that
        distance (Å) and the pair's two species (-1: none); over owned atoms the largest ratio
        |q| / largest |q| of its species in training (0: none), that charge (e) and its species."""
        values = torch.tensor([math.inf, 0.0, -1.0, -1.0, 0.0, 0.0, -1.0], dtype=vectors.dtype, device=vectors.device)
        if not self.has_training_domain:
            return values
        own = receivers < n_local
        if bool(own.any()):
            first = species[receivers[own]]
            second = species[senders[own]]
            distances = torch.linalg.norm(vectors[own], dim=-1)
            ratios = distances / self.training_min_distances[first, second]
            k = int(torch.argmin(ratios))
            values[0] = ratios[k]
            values[1] = distances[k]
            values[2] = first[k].to(values.dtype)
            values[3] = second[k].to(values.dtype)
        if n_local > 0:
            own_species = species[:n_local]
            ratios = charges.abs() / self.training_max_charges[own_species]
            k = int(torch.argmax(ratios))
            values[4] = ratios[k]
            values[5] = charges[k]
            values[6] = own_species[k].to(values.dtype)
        return values

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        positions: torch.Tensor,
        species: torch.Tensor,
        n_local: int,
        edge_index: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        field: torch.Tensor,
        image_shifts: torch.Tensor,
        state: torch.Tensor,
        ghost_owners: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        """One force evaluation of this rank (contract in lammps_plugin/README.md)."""
        periodic = bool(pbc.all())
        if not periodic and bool(pbc.any()):
            raise RuntimeError(
                "fpscf: the deployed model supports boxes periodic in all directions (p p p) or in none "
                "(f f f / s s s), not a mix"
            )
        if periodic and self.boundary_method == "realspace":
            raise RuntimeError("fpscf: this model treats structures as isolated (realspace electrostatics); use boundary f f f")
        if not periodic and self.boundary_method == "pbc":
            raise RuntimeError("fpscf: this model is for periodic systems only; use boundary p p p")
        dtype = positions.dtype
        device = positions.device
        n_all = positions.shape[0]
        receivers = edge_index[0]
        senders = edge_index[1]

        # differentiable leaves: edge vectors (local part), owned unwrapped positions and the cell (global part)
        vectors = (positions[receivers] - positions[senders]).detach().requires_grad_(True)
        owned = (positions[:n_local] + image_shifts).detach().requires_grad_(True)
        box = cell.detach().requires_grad_(True)
        applied = field.to(dtype).detach().requires_grad_(True)
        model_edges = torch.stack([senders, receivers])

        edge_sh, edge_radial = self.encoder.edge_embedding(vectors)
        node = self.encoder.embed_species(species)
        layers: List[torch.Tensor] = []
        depth = 0
        for block in self.encoder.interactions:
            node = block(node, edge_sh, edge_radial, model_edges)
            depth += 1
            if depth < self.num_interactions:  # ghosts take their owners' features (LAMMPS forward comm)
                node = torch.ops.fpscf.ghost_exchange(node, ghost_owners)
            layers.append(node)
        node_feats_all = layers[-1]
        scalars: List[torch.Tensor] = []
        for layer, count in zip(layers, self.layer_scalar_counts):
            scalars.append(layer[:, :count])
        node_scalars = torch.cat(scalars, dim=-1)[:n_local]
        node_feats = node_feats_all[:n_local]
        own_species = species[:n_local]

        scale = self.density_scaling[own_species][:, None]
        local = self.local_bound(torch.cat([self.local_charges(node_scalars), self.local_higher(node_feats)], dim=-1)) * scale
        local = torch.nn.functional.pad(local, [0, self.num_coefficients - local.shape[1]])

        field_coordinates = owned
        if periodic and self.bond_midpoints:
            own_edges = receivers < n_local
            field_coordinates = bond_midpoint_coordinates(
                vectors[own_edges], receivers[own_edges], n_local, self.bond_on, self.bond_off
            )
        external = applied_field_features(field_coordinates, applied.expand(n_local, 3), self.max_l)

        recip: Optional[ReciprocalGeometry] = None
        recip_detached: Optional[ReciprocalGeometry] = None
        mesh: Optional[MeshGeometry] = None
        mesh_detached: Optional[MeshGeometry] = None
        no_index = torch.zeros(0, dtype=torch.long, device=device)
        empty_pairs = (no_index, no_index, positions.new_zeros(0, 3), positions.new_zeros(0, 1, 1))
        pairs = empty_pairs
        pairs_detached = empty_pairs
        offset, total = 0, n_local  # this rank's rows among all ranks' atoms (open boundaries only)
        if periodic and self.kspace == "pme":
            shape = grid_shape(box.detach(), self.mesh_spacing)
            mesh = prepare_mesh(owned, box, shape, self.spline_order, self.interaction_widths, self.coulomb_constant)
            mesh_detached = detach_mesh(mesh)
        elif periodic:
            miller = half_space_miller_indices(box.detach(), self.k_cutoff)
            recip = prepare_reciprocal(
                owned, box, miller, self.smearing_width, self.receiver_widths,
                self.quadrupole_matrices if self.max_l >= 2 else None, self.coulomb_constant,
            )
            recip_detached = detach_reciprocal(recip)
        else:
            info = torch.ops.fpscf.world_info(positions)
            rank = int(info[0])
            counts = positions.new_zeros(int(info[1]))
            counts[rank] = float(n_local)
            counts = self._global_sum(counts)
            offset = int(counts[:rank].sum())
            total = int(counts.sum())
            everyone = self._gather_rows(owned, offset, total)
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
            pairs = (receiver_rows, sources, separation, radial)
            pairs_detached = (receiver_rows, sources, separation.detach(), radial.detach())

        # warm start: rows of `state` hold (p, μ, λ_p, λ_μ) of the previous step, NaN where there is none
        k = self.num_coefficients
        if state.shape[1] == self.state_size:
            valid = torch.isfinite(state).all(dim=1)
        else:
            valid = torch.zeros(n_local, dtype=torch.bool, device=device)
        p0 = local.detach().clone()
        lam_p0 = positions.new_zeros(n_local, k)
        globals_sum = positions.new_zeros(3)  # Σμ, Σλ_μ, count over valid rows of all ranks
        if bool(valid.any()):
            rows = state[valid].to(dtype)
            p0[valid] = rows[:, :k]
            lam_p0[valid] = rows[:, k + 1 : 2 * k + 1]
            globals_sum[0] = rows[:, k].sum()
            globals_sum[1] = rows[:, 2 * k + 1].sum()
            globals_sum[2] = float(rows.shape[0])
        globals_sum = self._global_sum(globals_sum)
        count = float(globals_sum[2])
        mu0 = (globals_sum[0] / count).reshape(1) if count > 0 else positions.new_zeros(1)
        lam_mu0 = (globals_sum[1] / count).reshape(1) if count > 0 else positions.new_zeros(1)

        no_edges = (positions.new_zeros(0), positions.new_zeros(0), torch.zeros(2, 0, dtype=torch.long, device=device))
        geometry = Geometry(periodic, recip, mesh, pairs, offset, total)
        fixed_geometry = Geometry(periodic, recip_detached, mesh_detached, pairs_detached, offset, total)
        nodes = NodeContext(local, node_scalars, node_feats, no_edges)
        fixed_nodes = NodeContext(local.detach(), node_scalars.detach(), node_feats.detach(), no_edges)
        p_star, mu_star, steps = self._scf(p0, mu0, external.detach(), fixed_geometry, fixed_nodes)

        # energy and map at the fixed point, differentiable in (p, μ) and the geometry leaves
        p_var = p_star.detach().requires_grad_(True)
        mu_var = mu_star.detach().requires_grad_(True)
        hartree, base = self._base_features(p_var, external, geometry)
        g_map = self._response(base, mu_var, nodes)
        e_hartree = 0.5 * (p_var * hartree[:, 0, : self.num_coefficients]).sum(-1)
        e_field = (p_var * external[:, 0, : self.num_coefficients]).sum(-1)
        if self.strict_readout:
            response, bias = self.update.embedding.response(node_scalars)
            e_readout = self.field_readout(p_var, local, response, bias, self.feature_norms)
        else:
            e_readout = self.field_readout(node_scalars, p_var, local, self._update_features(base, mu_var), model_edges)
        repulsion = self.repulsion(vectors, species, senders, receivers, n_all)[:n_local]
        atomic_energies = (
            self.atomic_energies[own_species] + self.local_energy(node_scalars).squeeze(-1) + e_readout + e_hartree + e_field
            + repulsion
        )
        energy = atomic_energies.sum()

        # adjoint λ of the augmented map, then one backward pass of E + λ·F at fixed (p*, μ*)
        grads = torch.autograd.grad([energy], [p_var, mu_var], retain_graph=True, allow_unused=True)
        g_p = self._or_zeros(grads[0], p_var)
        g_mu = self._or_zeros(grads[1], mu_var)
        g_mu_total = self._global_sum(g_mu.reshape(1))
        # the adjoint's products need ∂G/∂(p, μ) only: a graph of G in which nothing else requires
        # grad (cheap vector-Jacobian products; the geometry's derivatives are not recomputed)
        p_adj = p_star.detach().requires_grad_(True)
        mu_adj = mu_star.detach().requires_grad_(True)
        _, base_adj = self._base_features(p_adj, external.detach(), fixed_geometry)
        g_adj = self._response(base_adj, mu_adj, fixed_nodes)
        slope_grads = torch.autograd.grad([g_adj[:, 0].sum()], [mu_adj], retain_graph=True, allow_unused=True)
        slope_local = self._or_zeros(slope_grads[0], mu_adj)
        slope = self._global_sum(slope_local.detach().reshape(1))[0]
        rhs = torch.cat([g_p.detach().reshape(-1), g_mu_total.detach()])
        lam, linear_steps = self._gmres(rhs, g_adj, p_adj, mu_adj, slope, torch.cat([lam_p0.reshape(-1), lam_mu0]))
        lam = lam.detach()
        lam_p = lam[:-1].reshape(p_var.shape).clone()
        lam_p[:, 0] = lam_p[:, 0] - lam[-1] / slope
        lagrangian = energy + (lam_p * g_map).sum()
        leaf_grads = torch.autograd.grad([lagrangian], [vectors, owned, box, applied], allow_unused=True)
        g_vec = self._or_zeros(leaf_grads[0], vectors)
        g_own = self._or_zeros(leaf_grads[1], owned)
        g_box = self._or_zeros(leaf_grads[2], box)
        g_field = self._or_zeros(leaf_grads[3], applied)

        # forces: vector_e = x_receiver - x_sender
        forces = positions.new_zeros(n_all, 3)
        forces = forces.index_add(0, receivers, -g_vec).index_add(0, senders, g_vec)
        forces[:n_local] = forces[:n_local] - g_own

        # virial W_ab = -dE/dη_ab; per atom: half of each edge to both ends, the owned-position
        # term to its atom, the explicit cell term (reciprocal space) shared evenly by owned atoms
        edge_w = -vectors.detach()[:, :, None] * g_vec[:, None, :]
        atom_w = positions.new_zeros(n_all, 3, 3)
        atom_w = atom_w.index_add(0, receivers, 0.5 * edge_w).index_add(0, senders, 0.5 * edge_w)
        atom_w[:n_local] = atom_w[:n_local] - owned.detach()[:, :, None] * g_own[:, None, :]
        if n_local > 0:
            cell_w = -(box.detach().T @ g_box)
            atom_w[:n_local] = atom_w[:n_local] + cell_w / n_local
        virial = torch.stack(
            [
                atom_w[:, 0, 0], atom_w[:, 1, 1], atom_w[:, 2, 2],
                0.5 * (atom_w[:, 0, 1] + atom_w[:, 1, 0]),
                0.5 * (atom_w[:, 0, 2] + atom_w[:, 2, 0]),
                0.5 * (atom_w[:, 1, 2] + atom_w[:, 2, 1]),
            ],
            dim=1,
        )
        centroid = torch.stack(
            [
                atom_w[:, 0, 0], atom_w[:, 1, 1], atom_w[:, 2, 2], atom_w[:, 0, 1], atom_w[:, 0, 2], atom_w[:, 1, 2],
                atom_w[:, 1, 0], atom_w[:, 2, 0], atom_w[:, 2, 1],
            ],
            dim=1,
        )
        p_out = p_star.detach()
        new_state = torch.cat(
            [p_out, mu_star.detach().expand(n_local, 1), lam[:-1].reshape(n_local, k), lam[-1:].expand(n_local, 1)], dim=1
        )
        return {
            "atomic_energies": atomic_energies.detach(),
            "forces": forces.detach(),
            "virial": virial.detach(),
            "centroid_virial": centroid.detach(),
            "charges": p_out[:, 0].clone(),
            "dipole": -g_field.detach(),  # this rank's share of D = -dE/dε
            "state": new_state,
            "fermi_level": mu_star.detach(),
            "scf_steps": torch.tensor([float(steps)], dtype=dtype, device=device),
            "adjoint_steps": torch.tensor([float(linear_steps)], dtype=dtype, device=device),
            "domain": self._domain_values(vectors.detach(), receivers, senders, species, n_local, p_out[:, 0]),
            # this rank's energy above the isolated-atom references (eV), for the pair style's sanity bound
            "binding_energy": (atomic_energies.detach() - self.atomic_energies[own_species]).sum().reshape(1),
        }


def check_exportable(model: torch.nn.Module, kspace: str = "ewald") -> None:
    """Raise :class:`ExportError` naming what keeps ``model`` from running in the deployed form."""
    config = model.config
    problems = []
    if kspace not in KSPACE_METHODS:
        problems.append(f"kspace must be one of {KSPACE_METHODS}, got {kspace!r}")
    elif kspace == "pme" and max(config.atomic_multipoles_max_l, config.field_feature_max_l) > 1:
        problems.append(
            "the particle mesh handles multipoles and field features up to l = 1, this model has "
            f"atomic_multipoles_max_l {config.atomic_multipoles_max_l} and field_feature_max_l "
            f"{config.field_feature_max_l}: use kspace 'ewald'"
        )
    if not isinstance(model.update, OneBodyVariableUpdate):
        problems.append(
            "its update rule is ManyBodyUpdate (messages between neighbours at every SCF step need a ghost "
            "exchange per step, not implemented); train with fixedpoint_update_config: {type: OneBodyVariableUpdate}"
        )
    if not isinstance(model.field_readout, (StrictQuadraticFieldEnergyReadout, OneBodyMLPFieldReadout, NullFieldReadout)):
        problems.append(
            f"its field readout {type(model.field_readout).__name__} reads neighbours; use "
            "StrictQuadraticFieldEnergyReadout or OneBodyMLPFieldReadout"
        )
    if config.ewald_split_width is not None:
        problems.append(
            "it splits the periodic electrostatics Ewald-style (ewald_split_width); the deployed model sums in "
            "reciprocal space only: rebuild with ewald_split_width: null"
        )
    if config.electrostatic_pbc_method == "slab":
        problems.append("slab electrostatics are not supported by the deployed model")
    if getattr(config, "magnetic_moments", "none") != "none" or getattr(config, "spin_on_embedding", False):
        problems.append(
            "it has magnetic moments or a spin_on input (magnetic_moments / spin_on_embedding); the deployed model has "
            "no magnetic channel yet: use the ASE calculator"
        )
    if problems:
        raise ExportError("this model cannot be exported for LAMMPS: " + "; ".join(problems))


def deploy(
    model: torch.nn.Module,
    settings: Optional[SCFSettings] = None,
    total_charge: float = 0.0,
    kspace: str = "auto",
    mesh_spacing: Optional[float] = None,
    spline_order: int = 8,
) -> torch.jit.ScriptModule:
    """The TorchScript module of ``model`` (float64, CPU) for ``pair_style fpscf``.

    kspace: periodic electrostatics by direct k-sums (``ewald``, exact, the Python model's own
    method, cost ∝ N × volume) or a smooth particle mesh (``pme``, ~1e-8 relative, cost ∝ N);
    ``auto`` picks ``pme`` where it applies. mesh_spacing (Å, default 0.35 × the narrowest
    interaction width) and spline_order set the mesh.
    """
    model = model.to(torch.float64).cpu()
    module = DeployedModel(
        model, settings or SCFSettings(), total_charge, resolve_kspace(model, kspace), mesh_spacing, spline_order
    )
    return torch.jit.script(module)

"""The deployed model: a FixedPointModel for TorchScript and MPI, run by ``pair_style fpscf``.

:class:`DeployedModel` obeys the ``pair_style fpscf`` contract (lammps_plugin/README.md). One call
takes a rank's owned atoms and their ghosts and returns energies, forces, virials and charges of
the converged density. It is the Python model's own engine (:class:`fpscf.scf.engine.SCFEngine`:
the fixed-point map, Fermi level, Anderson mixing, energy terms and the GMRES adjoint) with the
reduction over ranks injected (:class:`fpscf.scf.reduction.RankReduction`, the ``fpscf::``
operators of :mod:`fpscf.export.comm`) and the electrostatics of a structure split over ranks
(:mod:`fpscf.electrostatics.ranks`). The work splits as in docs/contributing.md:

* local (owned + ghost atoms): encoder, local density, update rule, readouts;
* global, summed over ranks: the particle-mesh grid or the structure factor of a periodic cell
  (one all-reduce per SCF step), the total charge and its slope for the Fermi level, and the dot
  products of Anderson mixing and GMRES. Open boundaries gather every rank's positions and
  multipoles instead (small clusters).

Forces are exact: after the SCF converges, the adjoint ``(I − ∂F/∂x)ᵀ λ = ∂E/∂x`` of the
augmented map ``x = (p, μ)`` is solved by GMRES and the forces and virial are one backward pass of
``E + λ·F(x*)`` at fixed ``x*``, ``λ`` (the same implicit derivative as the Python model).

The density is warm-started from the ``state`` input (the previous step's multipoles, Fermi level
and adjoint, NaN rows for atoms without one).
"""

import copy
import math
from typing import Dict, List, Optional

import torch

from fpscf.domain import CHARGE_TOLERANCE, DISTANCE_TOLERANCE, MAX_ENERGY_PER_ATOM, deployed_domain
from fpscf.electrostatics.applied_field import applied_field_features, bond_midpoint_coordinates
from fpscf.electrostatics.gaussian_multipoles import SPLINE_ORDER
from fpscf.electrostatics.ranks import KSPACE_METHODS, RankElectrostatics, detach_geometry
from fpscf.errors import FpscfError
from fpscf.scf.engine import NodeContext, SCFEngine
from fpscf.scf.krylov import KrylovSolver, LinearSolveSettings
from fpscf.scf.readouts import NullFieldReadout, OneBodyMLPFieldReadout, StrictQuadraticFieldEnergyReadout
from fpscf.scf.reduction import RankReduction
from fpscf.scf.settings import FERMI_NEWTON_STEPS, SCFSettings, SolverSettings
from fpscf.scf.solver import scf_failure_message
from fpscf.scf.updates import OneBodyVariableUpdate


def resolve_kspace(model: torch.nn.Module, kspace: str) -> str:
    """``auto`` → the model's own periodic method (``kspace_method`` of its config, ``auto`` there
    meaning ``pme`` for multipoles and field features up to l = 1), so the export sums as the
    Python model does."""
    if kspace != "auto":
        return kspace
    config = model.electrostatics.config
    if config.ewald_split_width is not None:  # the split only speeds up the Python sums: same potential
        return "pme" if config.max_l <= 1 else "ewald"
    return str(config.periodic_method)


class ExportError(FpscfError, ValueError):
    """The model cannot be exported as it is; the message says what to change."""


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


class DeployedModel(SCFEngine):
    """TorchScript-ready fixed-point model for ``pair_style fpscf``. Build with :func:`deploy`."""

    # contract attributes (read by the pair style; the settings are overridden by its keywords)
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
    # the rest of SCFSettings and the adjoint's LinearSolveSettings, under the same names
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
    feature_max_l: int
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
        spline_order: int = SPLINE_ORDER,
    ) -> None:
        super().__init__()
        from ase.data import chemical_symbols

        config = model.config
        check_exportable(model, kspace)
        if spline_order not in (4, 6, 8, 10):
            raise ExportError(f"spline_order must be 4, 6, 8 or 10 (even), got {spline_order!r}")
        if mesh_spacing is not None and not mesh_spacing > 0:
            raise ExportError(f"mesh_spacing must be > 0 Å, got {mesh_spacing!r}")
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
        self.scf_tolerance = float(settings.scf_tolerance)
        self.max_scf_steps = int(settings.max_scf_steps)
        self.total_charge = float(total_charge)
        solver = settings.solver(LinearSolveSettings.for_dtype(torch.float64).rtol)
        self.charge_tolerance = solver.charge_tolerance
        self.mixing_parameter = solver.mixing_parameter
        self.anderson_history = solver.anderson_history
        self.divergence_factor = solver.divergence_factor
        self.fermi_newton_steps = FERMI_NEWTON_STEPS
        linear = LinearSolveSettings.for_dtype(torch.float64)
        self.linear_rtol = float(linear.rtol)
        self.linear_max_iterations = int(linear.max_iterations)
        self.linear_restart = int(linear.restart)

        self.local_l = int(model.local_l)
        self.feature_max_l = int(model.electrostatics.config.feature_max_l)
        self.layer_scalar_counts = [int(n) for n in model.layer_scalar_counts]
        self.strict_readout = isinstance(model.field_readout, StrictQuadraticFieldEnergyReadout)
        self.kspace = kspace
        self.spline_order = int(spline_order)
        # periodic boxes: the charges meet the field at their bond-midpoint coordinates (applied_field.py)
        self.bond_midpoints = str(config.field_coupling) == "bond_midpoints"
        bond_range = config.field_coupling_bond_range if self.bond_midpoints else (0.0, 0.0)
        self.bond_on = float(bond_range[0])
        self.bond_off = float(bond_range[1])

        # what the engine runs on: reductions over MPI ranks, and the electrostatics of a split structure
        self.reduction = RankReduction()
        self.krylov = KrylovSolver(RankReduction())
        self.electrostatics = RankElectrostatics(model.electrostatics, RankReduction(), kspace, mesh_spacing, spline_order)
        self.mesh_spacing = self.electrostatics.mesh_spacing
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

    def solver_settings(self) -> SolverSettings:
        """The engine's settings from this module's attributes (which the pair style may have set)."""
        return SolverSettings(
            self.scf_tolerance, self.charge_tolerance, self.max_scf_steps, self.mixing_parameter,
            self.anderson_history, self.divergence_factor, self.fermi_newton_steps, self.linear_rtol,
            self.linear_max_iterations, self.linear_restart, False,
        )

    def _or_zeros(self, gradient: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """An autograd result, or zeros shaped like its input when it did not depend on it."""
        return gradient if gradient is not None else torch.zeros_like(like)

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
        external = applied_field_features(field_coordinates, applied.expand(n_local, 3), self.electrostatics.max_l)
        geometry = self.electrostatics.prepare(owned, box, periodic)
        fixed_geometry = detach_geometry(geometry)

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
        globals_sum = self.reduction.sum_ranks(globals_sum)
        count = float(globals_sum[2])
        mu0 = (globals_sum[0] / count).reshape(1) if count > 0 else positions.new_zeros(1)
        lam_mu0 = (globals_sum[1] / count).reshape(1) if count > 0 else positions.new_zeros(1)

        no_edges = (positions.new_zeros(0), positions.new_zeros(0), torch.zeros(2, 0, dtype=torch.long, device=device))
        batch = torch.zeros(n_local, dtype=torch.long, device=device)
        nodes = NodeContext(local, node_scalars, node_feats, no_edges, batch, own_species)
        fixed_nodes = NodeContext(local.detach(), node_scalars.detach(), node_feats.detach(), no_edges, batch, own_species)
        total_charge = positions.new_full([1], self.total_charge)
        settings = self.solver_settings()
        p_star, mu_star, steps, status, history = self.self_consistent_field(
            p0, mu0, external.detach(), fixed_geometry, fixed_nodes, total_charge, True, settings
        )
        if status != 0:  # CONVERGED
            raise RuntimeError("fpscf: " + scf_failure_message(status, history, self.scf_tolerance, self.mixing_parameter))

        # energy at the fixed point, differentiable in x = (p, μ) and the geometry leaves
        slope = self.fermi_slope(self.base_features(p_star, external.detach(), fixed_geometry)[1], mu_star, fixed_nodes)
        x_star = self.augmented_state(p_star, mu_star)
        x_var = x_star.detach().requires_grad_(True)
        p_var, mu_var = self.split_state(x_var, n_local)
        hartree, base = self.base_features(p_var, external, geometry)
        repulsion = self.repulsion(vectors, species, senders, receivers, n_all)[:n_local]
        atomic_energies = self.node_energies(p_var, mu_var, hartree, base, external, nodes, model_edges) + repulsion
        energy = atomic_energies.sum()

        # adjoint λ of the augmented map (GMRES on ∂F/∂x at fixed geometry), warm-started from the state
        rhs = self._or_zeros(torch.autograd.grad([energy], [x_var], retain_graph=True, allow_unused=True)[0], x_var)
        x_adj = x_star.detach().requires_grad_(True)
        f_adj = self.augmented_map(x_adj, external.detach(), fixed_geometry, fixed_nodes, total_charge, slope)
        initial = self.augmented_state(lam_p0, lam_mu0)
        lam, linear_history, linear_steps, solved = self.solve_adjoint(rhs.detach(), initial, f_adj, x_adj, settings)
        if not solved:
            raise RuntimeError(
                "fpscf: GMRES for the force adjoint did not converge in " + str(linear_steps) + " products (relative "
                "residual " + str(linear_history[-1]) + ", linear_rtol " + str(self.linear_rtol) + "); the SCF map "
                "may be close to unstable at this geometry: check the structure"
            )
        lam = lam.detach()
        # one backward pass of E + λ·F(x*) at fixed (x*, λ)
        p_map = self.response(base, mu_var, nodes)
        f_map = torch.cat([p_map.reshape(-1), self.charge_condition(p_map, mu_var, batch, total_charge, slope)])
        lagrangian = energy + (lam * f_map).sum()
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
        lam_p, lam_mu = self.split_state(lam, n_local)
        new_state = torch.cat(
            [p_out, mu_star.detach().expand(n_local, 1), lam_p, lam_mu.expand(n_local, 1)], dim=1
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
    if config.electrostatic_pbc_method == "slab":
        problems.append(
            "its electrostatic_pbc_method is slab (periodic in x and y only); the deployed model sums periodic boxes "
            "in three dimensions (boundary p p p) or none (f f f), and its slab dipole correction (a sum over ranks "
            "per SCF step) is not implemented: use electrostatic_pbc_method auto or pbc with a vacuum gap in LAMMPS"
        )
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
    spline_order: int = SPLINE_ORDER,
) -> torch.jit.ScriptModule:
    """The TorchScript module of ``model`` (float64, CPU) for ``pair_style fpscf``.

    kspace: periodic electrostatics by direct k-sums (``ewald``, exact, cost ∝ N × volume) or a
    smooth particle mesh (``pme``, ~1e-8 relative, cost ∝ N log N); ``auto`` (default): the model's
    own method (its ``kspace_method``), so the export equals the Python model to rounding; a model
    with an Ewald split (a speed-up of the Python sums, same potential) gets the particle mesh. mesh_spacing (Å, default 0.35 × the narrowest
    interaction width) and spline_order (default 10) set the mesh; the defaults are the Python model's.
    """
    model = model.to(torch.float64).cpu()
    module = DeployedModel(
        model, settings or SCFSettings(), total_charge, resolve_kspace(model, kspace), mesh_spacing, spline_order
    )
    return torch.jit.script(module)

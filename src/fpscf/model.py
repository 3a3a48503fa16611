"""FixedPointModel: geometry encoder + self-consistent Gaussian-multipole density + energy.

``E = Σ_i E0(Z_i) + E_local(h) + E_H[ρ] + E_readout(p, f, h) − ε·D`` at the fixed point
``p* = p_local(h) + Δp(h, f[p*; μ, ε])`` (docs/physics.md). Forces and stress are exact
derivatives of the converged energy: the solution enters the energy through
:func:`fpscf.scf.implicit.attach_implicit_gradient`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from e3nn import o3

from fpscf.config import ModelConfig, make_config
from fpscf.data.graph import AtomicGraph, edge_vectors
from fpscf.electrostatics.applied_field import applied_field_features, bond_midpoint_coordinates, total_dipole
from fpscf.electrostatics.gaussian_multipoles import (
    ElectrostaticsConfig,
    GaussianMultipoleElectrostatics,
    resolve_boundary,
)
from fpscf.electrostatics.multipoles import multipole_irreps, num_multipole_coefficients
from fpscf.nn.bounds import LocalMultipoleBound
from fpscf.nn.levels import LevelHeads, structure_levels
from fpscf.nn.repulsion import ZBLRepulsion
from fpscf.nn import MLP, EncoderConfig, default_dtype, EquivariantEncoder, InteractionBlock, IrrepsReadout, ScalarReadout
from fpscf.scf.bounds import resolve_minimum_hardness
from fpscf.scf.implicit import implicit_fixed_point
from fpscf.scf.engine import NodeContext, SCFEngine
from fpscf.scf.krylov import KrylovSolver, LinearSolveSettings
from fpscf.scf.magnetic import MagneticChannel, magnetic_energy, magnetic_forces
from fpscf.tensor_tree import split_differentiable
from fpscf.units import BOHR_MAGNETON
from fpscf.scf.readouts import (
    ManyBodyChargesReadout,
    NullFieldReadout,
    OneBodyMLPFieldReadout,
    StrictQuadraticFieldEnergyReadout,
)
from fpscf.scf.reduction import LocalReduction
from fpscf.scf.settings import FERMI_NEWTON_STEPS, SCFSettings
from fpscf.scf.solver import CONVERGED, SCFConvergenceError, scf_failure_message
from fpscf.scf.updates import (
    BiasedLinearPotentialEmbedding,
    ManyBodyUpdate,
    MLPNonLinearity,
    NoNonLinearity,
    OneBodyVariableUpdate,
    feature_irreps,
)

FIXED_POINT_MODES = ("implicit", "linearize_solve", "unroll_scf", "direct")


@dataclass
class SCFState:
    """Converged density (N, K) and Fermi level (B,) V, for warm starts and outputs."""

    multipoles: torch.Tensor
    fermi_level: torch.Tensor
    steps: int
    residual_history: list[float]


class FixedPointModel(SCFEngine):
    """The fpscf model. Build with :func:`fpscf.build_model`, load with :func:`fpscf.load_model`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # e3nn creates its coupling constants in the default dtype at construction: build in float64
        # so a float64 model is exactly equivariant (casting a float32 build up leaves ~1e-8 errors).
        with default_dtype(torch.float64), torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self._build(config)

    def _build(self, config: ModelConfig) -> None:
        species = list(config.atomic_numbers)
        table = torch.full((119,), -1, dtype=torch.long)
        table[torch.tensor(species)] = torch.arange(len(species))
        self.register_buffer("species_table", table, persistent=False)
        self.encoder = EquivariantEncoder(
            EncoderConfig(
                num_species=len(species),
                r_max=config.r_max,
                num_bessel=config.num_bessel,
                num_channels=config.num_channels,
                max_L=config.max_L,
                sh_max_l=config.sh_max_l,
                num_interactions=config.num_interactions,
                correlation=config.correlation,
                radial_mlp_hidden=config.radial_mlp_hidden,
                avg_num_neighbors=config.avg_num_neighbors,
                radial_core_radius=config.radial_core_radius,
            )
        )
        node_irreps = self.encoder.irreps_out[-1]
        # Invariant channels of each interaction layer's output (plain ints: also valid once the
        # encoder is compiled with TorchScript, which drops its Irreps attributes).
        self.layer_scalar_counts = [int(ir.count("0e")) for ir in self.encoder.irreps_out]
        # spin_on_embedding: the structure's spin_on flag (0/1) is one more invariant of every atom.
        self.num_scalars = sum(self.layer_scalar_counts) + int(config.spin_on_embedding)
        lmax = config.atomic_multipoles_max_l
        self.num_coefficients = num_multipole_coefficients(lmax)
        self.local_l = min(lmax, config.max_L)
        self.local_energy = ScalarReadout(o3.Irreps(f"{self.num_scalars}x0e"), hidden=32)
        if config.use_linear_local_charges:
            self.local_charges = torch.nn.Linear(self.num_scalars, 1)
        else:
            self.local_charges = MLP([self.num_scalars, 32, 1])
        self.local_higher = (
            IrrepsReadout(node_irreps, multipole_irreps(self.local_l)[1:]) if self.local_l >= 1 else None
        )
        self.local_bound = LocalMultipoleBound(float(config.local_multipole_bound or 0.0))
        energies = torch.zeros(len(species))
        if isinstance(config.atomic_energies, dict):
            for z, e in config.atomic_energies.items():
                energies[species.index(int(z))] = float(e)
        self.register_buffer("atomic_energies", energies)
        #: energy heads of levels of theory 1 .. num_levels − 1 (fpscf.nn.levels); None for one level
        self.level_heads = LevelHeads(config.num_levels, len(species)) if config.num_levels > 1 else None
        scaling = torch.ones(len(species))
        if isinstance(config.atom_density_scaling, dict):
            for z, s in config.atom_density_scaling.items():
                scaling[species.index(int(z))] = float(s)
        self.register_buffer("density_scaling", scaling)

        self.electrostatics = GaussianMultipoleElectrostatics(
            ElectrostaticsConfig(
                multipole_max_l=lmax,
                smearing_width=config.atomic_multipoles_smearing_width,
                receiver_widths=tuple(config.field_feature_widths),
                feature_max_l=config.field_feature_max_l,
                kspace_cutoff_factor=config.kspace_cutoff_factor,
                include_self_interaction=config.include_electrostatic_self_interaction,
                include_field_self_interaction=config.include_field_si,
                backend=config.electrostatics_backend,
                ewald_split_width=config.ewald_split_width,
                kspace_method=config.kspace_method,
            )
        )
        widths = len(config.field_feature_widths)
        lf = config.field_feature_max_l
        norms = torch.ones(widths, lf + 1)
        if isinstance(config.field_feature_norms, (list, tuple)):
            norms = torch.tensor([float(v) for v in config.field_feature_norms]).reshape(widths, lf + 1)
        self.register_buffer("feature_norms", norms)

        update_cfg = config.fixedpoint_update_config
        hardness = resolve_minimum_hardness(
            config.minimum_hardness, self.electrostatics, min(lf, lmax), config.include_electrostatic_self_interaction
        )
        self.minimum_hardness = hardness
        embedding = BiasedLinearPotentialEmbedding(
            self.num_scalars, widths, lf, lmax,
            maximum_compliance=None if hardness is None else [1.0 / float(k) for k in hardness],
            feature_norms=norms,
        )
        if update_cfg.get("nonlinearity_cls", "NoNonLinearity") == "MLPNonLinearity":
            nonlinearity: torch.nn.Module = MLPNonLinearity(self.num_scalars, lmax)
        else:
            nonlinearity = NoNonLinearity()
        if update_cfg.get("type", "OneBodyVariableUpdate") == "ManyBodyUpdate":
            enc_cfg = self.encoder.config
            self.update = ManyBodyUpdate(
                embedding,
                nonlinearity,
                node_irreps,
                feature_irreps(widths, lf),
                multipole_irreps(lmax),
                InteractionBlock(node_irreps, enc_cfg.node_irreps, enc_cfg),
            )
        else:
            self.update = OneBodyVariableUpdate(embedding, nonlinearity)

        self.repulsion = (
            ZBLRepulsion(species, config.repulsion_cutoff_factor) if config.short_range_repulsion == "zbl" else None
        )
        self.magnetic = (
            MagneticChannel(config.magnetic_moments, self.num_scalars, node_irreps, config.num_bessel)
            if config.magnetic_moments != "none"
            else None
        )

        readout_type = config.field_readout_config.get("type", "StrictQuadraticFieldEnergyReadout")
        self.readout_uses_edges = readout_type.startswith("ManyBody")
        if readout_type == "NullFieldReadout":
            self.field_readout: torch.nn.Module = NullFieldReadout()
        elif readout_type == "StrictQuadraticFieldEnergyReadout":
            self.field_readout = StrictQuadraticFieldEnergyReadout(lmax)
        elif readout_type == "OneBodyMLPFieldReadout":
            self.field_readout = OneBodyMLPFieldReadout(self.num_scalars, lmax, widths, lf)
        else:
            self.field_readout = ManyBodyChargesReadout(
                self.num_scalars, lmax, widths, lf, config.num_bessel, readout_type == "ManyBodyChargesFieldReadout"
            )
        # the SCF engine (fpscf.scf.engine) of one process: no reduction over ranks
        self.feature_max_l = int(lf)
        self.strict_readout = isinstance(self.field_readout, StrictQuadraticFieldEnergyReadout)
        self.reduction = LocalReduction()
        self.krylov = KrylovSolver(LocalReduction())

    # ------------------------------------------------------------------ helpers
    @property
    def atomic_numbers(self) -> list[int]:
        return list(self.config.atomic_numbers)

    def species_index(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        """Map atomic numbers (N,) to species indices; unknown elements are a clear error."""
        index = self.species_table[atomic_numbers.clamp(0, 118)]
        if bool((index < 0).any()) or bool((atomic_numbers > 118).any()):
            from ase.data import chemical_symbols

            bad = sorted({int(z) for z in atomic_numbers[index < 0].tolist()})
            names = [chemical_symbols[z] if 0 <= z < 119 else str(z) for z in bad]
            known = [chemical_symbols[z] for z in self.atomic_numbers]
            raise ValueError(
                f"element(s) {names} are not known to this model (it was built for {known}); "
                "train or build a model that includes them"
            )
        return index

    def density_field_features(self, graph: AtomicGraph, multipoles: torch.Tensor) -> torch.Tensor:
        """Unnormalised field features (N, W, (L_f+1)²) of a given density (N, K) and the applied
        field: what the SCF update reads, without the Fermi-level shift. Used for feature statistics."""
        field = graph.external_field.to(graph.positions.dtype)
        geometry, external, _ = self._field_sources(graph, graph.positions, graph.cell, field)
        return self.base_features(multipoles, external, geometry)[1]

    def _field_sources(
        self, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor, field: torch.Tensor
    ) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Electrostatic geometry of the structures, the applied-field features (N, 1+W, (L+1)²)
        of the field (B,3) V/Å at ``positions`` (N,3) Å, and the field coordinates (N,3) Å they use
        (:meth:`field_coordinates`)."""
        boundary = [
            resolve_boundary([bool(v) for v in graph.pbc[b].tolist()], self.config.electrostatic_pbc_method, b)
            for b in range(graph.num_graphs)
        ]
        geometry = self.electrostatics.prepare(positions, cell, graph.batch, boundary)
        coordinates = self.field_coordinates(graph, positions, cell)
        external = applied_field_features(coordinates, field[graph.batch], self.electrostatics.config.max_l)
        return geometry, external, coordinates

    def field_coordinates(self, graph: AtomicGraph, positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Where each atom's charge meets a uniform field, (N, 3) Å: its position, or with
        ``field_coupling="bond_midpoints"`` and a periodic structure its displacement from the
        centroid of its bond midpoints (image-independent; see fpscf/electrostatics/applied_field.py)."""
        if self.config.field_coupling == "positions":
            return positions
        r_on, r_off = self.config.field_coupling_bond_range
        midpoints = bond_midpoint_coordinates(
            edge_vectors(graph, positions, cell), graph.edge_index[1], graph.num_atoms, float(r_on), float(r_off)
        )
        periodic = graph.pbc.to(torch.bool).any(dim=-1)[graph.batch]
        return torch.where(periodic[:, None], midpoints, positions)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        graph: AtomicGraph,
        *,
        constant_charge: bool = True,
        fermi_level: torch.Tensor | None = None,
        initial_multipoles: torch.Tensor | None = None,
        initial_fermi_level: torch.Tensor | None = None,
        settings: SCFSettings | None = None,
        compute_forces: bool = False,
        compute_stress: bool = False,
        compute_dipole: bool = False,
        compute_magnetic_moment: bool = False,
        compute_magnetic_forces: bool = False,
        fix_moments: bool | torch.Tensor = False,
        create_graph: bool = False,
        self_consistent: bool = True,
        mode: str = "implicit",
        unroll_steps: int = 10,
    ) -> dict[str, Any]:
        """Energy (B,) eV, per-atom energies, multipoles, Fermi level (B,) V, the density dipole
        ``Σ(q r + d)`` (B,3) e·Å, and on request forces (N,3) eV/Å, virial ``W = −∂E/∂η`` (B,3,3) eV
        and stress ``−W/Ω`` (B,3,3) eV/Å³ (ASE sign; NaN without a cell volume), and the dipole
        ``D = −∂E/∂ε`` (B,3) e·Å (exact, through the fixed point; equal to the
        density dipole for a variational model, see StrictQuadraticFieldEnergyReadout).

        Models with magnetic moments (``magnetic_moments``) also return ``magmoms`` (N,3) or (N,)
        μ_B, self-consistent in the magnetic field ``graph.magnetic_field`` (B,3) T from
        ``graph.initial_magmoms`` (:mod:`fpscf.scf.magnetic`); ``fix_moments`` (bool or (B,) bool)
        holds them at the initial moments instead (constrained moments). On request the magnetic
        moment ``M = −(1/μ_B) ∂E/∂B`` (B,3) μ_B and the magnetic forces ``−∂E/∂m_i`` eV/μ_B.

        ``differentiable_inputs`` holds the positions (N,3), strain (B,3,3) and field (B,3) tensors the
        energy was built from; with ``create_graph=True`` the outputs can be differentiated again
        with respect to them (:mod:`fpscf.calculators.response`).

        mode (docs/physics.md, Training modes) says how the density is found and differentiated:
        ``implicit`` (converge, implicit derivatives by matrix-free GMRES), ``linearize_solve``
        (converge, then build the Jacobian of the SCF map at the solution and LU-solve: same
        derivatives, small systems only), ``unroll_scf`` (``unroll_steps`` linear-mixing steps from
        the initial density with ``settings.mixing_parameter``, backpropagated through) and
        ``direct`` (one update ``G(p0, μ0)`` from the given initial density and Fermi level).
        self_consistent=False evaluates the same model with the density fixed at the local guess
        (no field response), used to measure the cost of the SCF.
        """
        if mode not in FIXED_POINT_MODES:
            raise ValueError(f"mode must be one of {FIXED_POINT_MODES}, got {mode!r}")
        if mode == "unroll_scf" and (not isinstance(unroll_steps, int) or unroll_steps < 1):
            raise ValueError(f"unroll_steps must be an integer ≥ 1 for mode 'unroll_scf', got {unroll_steps!r}")
        settings = settings or SCFSettings()
        n_graphs = graph.num_graphs
        batch = graph.batch
        positions = graph.positions
        cell = graph.cell
        strain = None
        if compute_stress:
            strain = torch.zeros(n_graphs, 3, 3, dtype=positions.dtype, device=positions.device, requires_grad=True)
            sym = 0.5 * (strain + strain.transpose(1, 2))
            positions = positions + torch.einsum("ni,nij->nj", positions, sym[batch])
            cell = cell + torch.einsum("bki,bij->bkj", cell, sym)
        if compute_forces and not positions.requires_grad:
            positions = positions.detach().requires_grad_(True)
        graph_positions = positions

        vectors = edge_vectors(graph, graph_positions, cell)
        species = self.species_index(graph.atomic_numbers)
        edge_sh, edge_radial = self.encoder.edge_embedding(vectors)
        layers = self.encoder.forward_embedded(species, edge_sh, edge_radial, graph.edge_index)
        node_feats = layers[-1]
        scalar_parts = [x[:, :count] for x, count in zip(layers, self.layer_scalar_counts)]
        spin_on = graph.spin_on if graph.spin_on is not None else torch.ones_like(graph.total_charge, dtype=torch.bool)
        if self.config.spin_on_embedding:
            scalar_parts.append(spin_on[batch].to(positions.dtype)[:, None])
        node_scalars = torch.cat(scalar_parts, dim=-1)
        update_edges = (edge_sh, edge_radial, graph.edge_index)
        readout_edges = (edge_radial, graph.edge_index)

        # Local density: charges from invariants, higher multipoles (l ≤ max_L) from the irreps;
        # multipoles the encoder cannot produce start at zero and come from the field response.
        scale = self.density_scaling.to(positions.dtype)[species][:, None]
        pieces = [self.local_charges(node_scalars)]
        if self.local_higher is not None:
            pieces.append(self.local_higher(node_feats))
        local = self.local_bound(torch.cat(pieces, dim=-1)) * scale
        local = torch.nn.functional.pad(local, (0, self.num_coefficients - local.shape[1]))

        field_input = graph.external_field.to(positions.dtype)
        if compute_dipole:
            field_input = field_input.detach().requires_grad_(True)
        geometry, external, field_coordinates = self._field_sources(graph, graph_positions, cell, field_input)
        total_charge = graph.total_charge.to(positions.dtype)

        nodes = NodeContext(local, node_scalars, node_feats, update_edges, batch, species)
        # Constant charge: μ starts from the warm-start value and is solved; otherwise it is fixed.
        start_mu = initial_fermi_level if constant_charge else fermi_level
        mu0 = (start_mu if start_mu is not None else positions.new_zeros(n_graphs)).to(positions.dtype).detach()
        if initial_multipoles is not None:
            p0 = initial_multipoles.detach()
        else:  # the local guess; an unrolled SCF differentiates through its start as well
            p0 = local if mode == "unroll_scf" else local.detach()

        steps, history = 0, []
        if not self_consistent:
            multipoles, mu = local, mu0
        elif mode in ("implicit", "linearize_solve"):
            fixed = NodeContext(local.detach(), node_scalars.detach(), node_feats.detach(),
                                tuple(t.detach() for t in update_edges), batch, species)  # type: ignore[arg-type]
            linear_solve = LinearSolveSettings.for_dtype(
                positions.dtype, method="dense" if mode == "linearize_solve" else "gmres", on_failure=settings.on_failure
            )
            with torch.no_grad():
                p_star, mu_star, steps, status, history = self.self_consistent_field(
                    p0, mu0, external.detach(), geometry, fixed, total_charge, constant_charge,
                    settings.solver(linear_solve.rtol, linear_solve.max_iterations, linear_solve.restart),
                )
            if status != CONVERGED:
                message = scf_failure_message(status, history, settings.scf_tolerance, settings.mixing_parameter)
                message += "; pass on_scf_failure='warn' to continue anyway."
                if settings.on_failure == "raise":
                    raise SCFConvergenceError(message, history)
                warnings.warn(message, RuntimeWarning, stacklevel=2)
            multipoles, mu = self._attach_implicit(
                p_star, mu_star, constant_charge, total_charge, n_graphs, nodes, geometry, external, linear_solve,
            )
        elif mode == "unroll_scf":
            multipoles, mu = p0, mu0
            for _ in range(unroll_steps):
                base = self.base_features(multipoles, external, geometry)[1]
                if constant_charge:
                    mu = self.solve_fermi_level(base, mu, nodes, total_charge, FERMI_NEWTON_STEPS, True)
                change = self.response(base, mu, nodes) - multipoles
                history.append(float(change.detach().abs().max()) if change.numel() else 0.0)
                multipoles = multipoles + settings.mixing_parameter * change
            steps = unroll_steps
        else:  # direct: one update from the given density and Fermi level
            multipoles, mu = self.response(self.base_features(p0, external, geometry)[1], mu0, nodes), mu0
            steps = 1
        hartree, base = self.base_features(multipoles, external, geometry)
        node_energy = self.node_energies(
            multipoles, mu, hartree, base, external, nodes, readout_edges if self.readout_uses_edges else update_edges[2]
        )
        if self.repulsion is not None:
            node_energy = node_energy + self.repulsion(
                vectors, species, graph.edge_index[0], graph.edge_index[1], graph.num_atoms
            )
        if self.level_heads is not None:  # each structure's level of theory picks its energy head
            levels = structure_levels(graph, self.level_heads.num_levels)[batch]
            node_energy = self.level_heads(node_energy, species, self.atomic_energies, levels)
        magnetic_input = graph.magnetic_field.to(positions.dtype)
        if compute_magnetic_moment:
            magnetic_input = magnetic_input.detach().requires_grad_(True)
        magnetic_out: dict[str, Any] = {}
        if self.magnetic is not None:
            node_energy, magnetic_out = self._magnetic(
                graph, node_energy, node_scalars, node_feats, edge_radial, vectors, base, magnetic_input,
                spin_on, fix_moments, settings, compute_magnetic_forces, create_graph,
            )
        elif compute_magnetic_moment or compute_magnetic_forces:
            raise ValueError(
                "this model has no magnetic moments (magnetic_moments: none); build or train one with "
                "magnetic_moments: collinear or noncollinear to get magnetic moments and magnetic forces"
            )
        energy = node_energy.new_zeros(n_graphs).index_add(0, batch, node_energy)
        out: dict[str, Any] = {
            "energy": energy,
            "node_energy": node_energy,
            "multipoles": multipoles,
            "charges": multipoles[:, 0],
            "fermi_level": mu,
            "density_dipole": total_dipole(field_coordinates, multipoles, batch, n_graphs),
            "scf_steps": steps,
            "residual_history": history,
            "local_multipoles": local,
            # Potential features of the density and the applied field (unnormalised, no μ shift):
            # (N, W, (L_f+1)²) V, V/Å, V/Å²; esps = their l = 0 part at the narrowest receiver (V).
            "field_features": base,
            "esps": base[:, min(range(len(self.config.field_feature_widths)), key=lambda k: self.config.field_feature_widths[k]), 0],
            # G(p, μ) of this geometry, (N, K), (B,) -> (N, K): for tests and linear-response solves.
            "scf_map": lambda p, mu: self.response(self.base_features(p, external, geometry)[1], mu, nodes),
            **magnetic_out,
        }
        wrt = []
        if compute_forces:
            wrt.append(graph_positions)
        if compute_stress:
            wrt.append(strain)
        if compute_dipole:
            wrt.append(field_input)
        if compute_magnetic_moment:
            wrt.append(magnetic_input)
        if wrt:
            grads = torch.autograd.grad(energy.sum(), wrt, create_graph=create_graph, allow_unused=True)
            if compute_magnetic_moment:
                g = grads[-1]
                out["magnetic_moment"] = (-g if g is not None else torch.zeros_like(magnetic_input)) / BOHR_MAGNETON
                grads = grads[:-1]
            if compute_dipole:
                g = grads[-1]
                out["dipole"] = -g if g is not None else torch.zeros_like(field_input)
                grads = grads[:-1]
            if compute_forces:
                out["forces"] = -grads[0] if grads[0] is not None else torch.zeros_like(graph_positions)
            if compute_stress:
                g = grads[-1] if grads[-1] is not None else torch.zeros_like(strain)
                out["virial"] = -g
                volume = torch.abs(torch.linalg.det(graph.cell))
                # Stress only where the cell has a volume (periodic); NaN for molecules.
                has_volume = (volume > 1e-12)[:, None, None]
                stress = g / torch.where(has_volume, volume[:, None, None], torch.ones_like(volume)[:, None, None])
                out["stress"] = torch.where(has_volume, stress, torch.full_like(stress, torch.nan))
        out["differentiable_inputs"] = {
            "positions": graph_positions, "strain": strain, "field": field_input, "magnetic_field": magnetic_input,
        }
        return out

    def _magnetic(
        self, graph: AtomicGraph, node_energy: torch.Tensor, node_scalars: torch.Tensor, node_feats: torch.Tensor,
        edge_radial: torch.Tensor, vectors: torch.Tensor, base: torch.Tensor, magnetic_field: torch.Tensor,
        spin_on: torch.Tensor, fix_moments: bool | torch.Tensor, settings: SCFSettings,
        compute_magnetic_forces: bool, create_graph: bool,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Node energies with the magnetic energy of the self-consistent moments added, and the
        magnetic outputs (``magmoms``, moment SCF steps and history, magnetic forces)."""
        assert self.magnetic is not None
        batch, n_atoms = graph.batch, graph.num_atoms
        fixed = torch.as_tensor(fix_moments, dtype=torch.bool, device=batch.device).expand(graph.num_graphs)
        if bool(fixed.any()) and (
            graph.initial_magmoms is None or bool(torch.isnan(graph.initial_magmoms[fixed[batch]]).any())
        ):
            raise ValueError(
                "fix_moments holds the moments at graph.initial_magmoms, but this structure has none; set "
                "atoms.set_initial_magnetic_moments(...) (or arrays['initial_noncollinear_magmoms'])"
            )
        # Local electric field F = −∇φ (V/Å) of the density and ε at the narrowest receiver.
        widths = self.config.field_feature_widths
        narrowest = min(range(len(widths)), key=lambda k: widths[k])
        if base.shape[-1] >= 4:
            local_field = -base[:, narrowest, 1:4]
        else:
            local_field = base.new_zeros(n_atoms, 3)
        terms = self.magnetic.terms(
            node_scalars, node_feats, edge_radial, vectors, graph.edge_index, local_field, magnetic_field, batch
        )
        initial = None if graph.initial_magmoms is None else graph.initial_magmoms.to(node_energy.dtype)
        start = self.magnetic.starting_moments(initial, magnetic_field.detach(), batch, n_atoms)
        magnetic = spin_on[batch]
        start = torch.where(magnetic[:, None], start, torch.zeros_like(start))
        active = magnetic & ~fixed[batch]
        linear_solve = LinearSolveSettings.for_dtype(node_energy.dtype, on_failure=settings.on_failure)
        moments, result = self.magnetic.solve(terms, start, active, settings, linear_solve)
        out: dict[str, Any] = {
            "magmoms": moments[:, 0] if self.magnetic.kind == "collinear" else moments,
            "moment_scf_steps": result.steps,
            "moment_residual_history": result.residual_history,
        }
        if compute_magnetic_forces:
            forces = magnetic_forces(moments, terms, create_graph)
            out["magnetic_forces"] = forces[:, 0] if self.magnetic.kind == "collinear" else forces
        return node_energy + magnetic_energy(moments, terms), out

    def _attach_implicit(
        self,
        p_star: torch.Tensor,
        mu_star: torch.Tensor,
        constant_charge: bool,
        total_charge: torch.Tensor,
        n_graphs: int,
        nodes: NodeContext,
        geometry: Any,
        external: torch.Tensor,
        linear_solve: LinearSolveSettings,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The converged (p*, μ*) as a differentiable function of everything the SCF map reads.

        The implicit variable is the engine's augmented state ``x = (p, μ)`` for constant charge,
        whose map :meth:`~fpscf.scf.engine.SCFEngine.augmented_map` has the constrained solution as
        its fixed point, so derivatives of every order are exact. In grand-canonical mode x = p and
        μ is an input. The update's parameters are inputs too (parameter gradients in training).
        """
        n_atoms = p_star.shape[0]
        names = [name for name, _ in self.update.named_parameters()]
        values = [value for _, value in self.update.named_parameters()]
        context_tensors, rebuild = split_differentiable(((nodes, geometry, external), total_charge, mu_star))

        def density_map(p: torch.Tensor, mu: torch.Tensor, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
            (ctx, geo, ext), _, _ = rebuild(tensors[: len(context_tensors)])
            params = dict(zip(names, tensors[len(context_tensors) :]))
            features = self.update_features(self.base_features(p, ext, geo)[1], mu, ctx.batch)
            return ctx.local + torch.func.functional_call(self.update, params, (ctx.scalars, ctx.feats, features, ctx.edges))

        def fixed_point_map(x: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
            (ctx, _, _), q_total, mu_fixed = rebuild(tensors[: len(context_tensors)])
            if not constant_charge:
                return density_map(x.reshape(n_atoms, self.num_coefficients), mu_fixed, tensors).reshape(-1)
            p, mu = self.split_state(x, n_atoms)
            p_new = density_map(p, mu, tensors)
            return torch.cat([p_new.reshape(-1), self.charge_condition(p_new, mu, ctx.batch, q_total, slope)])

        inputs = [*context_tensors, *values]
        slope = torch.ones_like(mu_star)
        if constant_charge:
            fixed = NodeContext(*(t.detach() if isinstance(t, torch.Tensor) else t for t in nodes))  # type: ignore[arg-type]
            with torch.no_grad():
                base = self.base_features(p_star, external.detach(), geometry)[1]
            slope = self.fermi_slope(base, mu_star, fixed)
            x_star = self.augmented_state(p_star.detach(), mu_star.detach())
        else:
            x_star = p_star.detach().reshape(-1)
        x = implicit_fixed_point(fixed_point_map, x_star, inputs, linear_solve)
        if not constant_charge:
            return x.reshape(n_atoms, self.num_coefficients), mu_star
        return self.split_state(x, n_atoms)

    # ------------------------------------------------------------------ io
    def save(self, path: str) -> None:
        """Write weights (safetensors) and a plain-data header atomically."""
        from fpscf.model_io import save_model

        save_model(self, path)


def build_model(atomic_numbers: Any, **hyperparameters: Any) -> FixedPointModel:
    """A :class:`FixedPointModel` with random, seeded weights (float64; cast with ``.float()`` or
    ``.to(device)``). Unknown options are a clear error listing the valid ones."""
    return FixedPointModel(make_config(atomic_numbers, **hyperparameters))

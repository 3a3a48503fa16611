"""The SCF engine: the fixed-point map, Fermi level, mixing, energy terms and adjoint, written once.

:class:`SCFEngine` is a TorchScript-compatible base of both :class:`fpscf.model.FixedPointModel`
(training, the ASE calculator) and :class:`fpscf.export.deployed.DeployedModel` (``pair_style
fpscf``). A subclass provides the learnt modules (``update``, ``field_readout``, ``local_energy``,
buffers ``atomic_energies`` and ``feature_norms``), the electrostatics (``electrostatics`` with
``potential(geometry, multipoles)``: the Hartree potential projections (N, 1+W, (L+1)²) of a
density, prepared once per geometry), and the reduction over ranks (``reduction``,
:mod:`fpscf.scf.reduction`) with a Krylov solver built on it (``krylov``). What differs between
one process and LAMMPS is only what is injected: every global quantity is a local sum followed by
``reduction.sum_ranks``.

Unknowns: the multipoles p (N, K) of this rank's atoms and the Fermi levels μ (B,) V of the B
structures. The map is ``G(p, μ) = p_local + Δp(h, f[p; μ, ε])``; with constant charge the
augmented map ``F(x) = (G(p, μ), μ − (Σq(G) − Q)/s)`` of ``x = (p, μ)`` (s = ∂Σq/∂μ at the
solution, a constant) has the constrained solution as its fixed point, so exact derivatives of
every order follow from the implicit function theorem (:mod:`fpscf.scf.implicit`). In adjoint
vectors the Fermi levels sit on the rank that ``reduction.owns_globals`` (rank 0).
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Tuple

import torch

from fpscf.electrostatics.ranks import RankGeometry
from fpscf.scf.settings import SolverSettings
from fpscf.scf.solver import anderson_products, anderson_step


class NodeContext(NamedTuple):
    """What the SCF map reads besides (p, μ), for this rank's N atoms: local density (N, K),
    invariant (N, S) and equivariant node features, the update's edges (spherical harmonics,
    radial basis, edge index), the structure of each atom (N,) and species indices (N,)."""

    local: torch.Tensor
    scalars: torch.Tensor
    feats: torch.Tensor
    edges: Tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    batch: torch.Tensor
    species: torch.Tensor


class SCFEngine(torch.nn.Module):
    """The SCF of a fixed-point model (see the module docstring); subclassed, never used alone."""

    num_coefficients: int
    feature_max_l: int
    strict_readout: bool

    # ------------------------------------------------------------------ the map
    def feature_scale(self, like: torch.Tensor) -> torch.Tensor:
        """Normalisers of the field features (W, (L_f+1)²), from ``feature_norms`` (W, L_f+1)."""
        norms = [self.feature_norms[:, l : l + 1].expand(-1, 2 * l + 1) for l in range(self.feature_max_l + 1)]
        return torch.cat(norms, dim=-1).to(like.dtype)

    def update_features(self, base: torch.Tensor, mu: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """What the update and readouts read: the potential features ``base`` (N, W, (L_f+1)²) with
        the Fermi level μ (B,) V added to the l = 0 potentials, normalised."""
        shift = torch.zeros_like(base)
        shift[:, :, 0] = mu[batch][:, None]
        return (base + shift) / self.feature_scale(base)

    def base_features(
        self, multipoles: torch.Tensor, external: torch.Tensor, geometry: RankGeometry
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Hartree potential channels (N, 1+W, (L+1)²) of the density and the unnormalised field
        features (N, W, (L_f+1)²) the update reads (Hartree + applied field ``external``, no μ)."""
        size_f = (self.feature_max_l + 1) * (self.feature_max_l + 1)
        hartree = self.electrostatics.potential(geometry, multipoles)
        return hartree, hartree[:, 1:, :size_f] + external[:, :, :size_f]

    def response(self, base: torch.Tensor, mu: torch.Tensor, nodes: NodeContext) -> torch.Tensor:
        """``G(p, μ)`` (N, K) from the potential features ``base`` of p and the Fermi levels μ (B,)."""
        features = self.update_features(base, mu, nodes.batch)
        return nodes.local + self.update(nodes.scalars, nodes.feats, features, nodes.edges)

    def structure_sums(self, values: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """Per-structure sums (B,) of per-atom ``values`` (N,) over all ranks."""
        return self.reduction.sum_ranks(values.new_zeros(num_graphs).index_add(0, batch, values))

    # ------------------------------------------------------------------ Fermi level
    def solve_fermi_level(
        self, base: torch.Tensor, mu: torch.Tensor, nodes: NodeContext, total_charge: torch.Tensor, steps: int,
        differentiable: bool,
    ) -> torch.Tensor:
        """Newton steps on ``Σq(G(p, μ)) = Q`` per structure at fixed potential features ``base``:
        values only, or (``differentiable``) kept in the graph for unrolled training."""
        num_graphs = mu.shape[0]
        for _ in range(steps):
            if differentiable and mu.requires_grad:
                mu_var = mu
            else:
                mu_var = mu.detach().requires_grad_(True)
            level_base = base if differentiable else base.detach()
            if torch.jit.is_scripting():  # TorchScript runs with gradients on
                local, slope_local = self._charges_and_slope(level_base, mu_var, nodes, differentiable)
            else:
                with torch.enable_grad():
                    local, slope_local = self._charges_and_slope(level_base, mu_var, nodes, differentiable)
            both = self.reduction.sum_ranks(torch.cat([local, slope_local]))
            mu = mu_var - (both[:num_graphs] - total_charge) / both[num_graphs:]
            if not differentiable:
                mu = mu.detach()
        return mu

    def fermi_slope(self, base: torch.Tensor, mu: torch.Tensor, nodes: NodeContext) -> torch.Tensor:
        """``s = ∂Σq/∂μ`` (B,) e/V per structure at fixed ``base`` (values only)."""
        mu_var = mu.detach().requires_grad_(True)
        if torch.jit.is_scripting():
            slope = self._charges_and_slope(base.detach(), mu_var, nodes, False)[1]
        else:
            with torch.enable_grad():
                slope = self._charges_and_slope(base.detach(), mu_var, nodes, False)[1]
        return self.reduction.sum_ranks(slope.detach())

    def _charges_and_slope(
        self, base: torch.Tensor, mu_var: torch.Tensor, nodes: NodeContext, create_graph: bool
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """This rank's charge per structure (B,) of ``G(p, μ)`` and its derivative in μ (B,)."""
        charges = self.response(base, mu_var, nodes)[:, 0]
        local = charges.new_zeros(mu_var.shape[0]).index_add(0, nodes.batch, charges)
        grads = torch.autograd.grad([local.sum()], [mu_var], create_graph=create_graph, allow_unused=True)
        slope = grads[0]
        if slope is None:
            slope = torch.zeros_like(mu_var)
        return local, slope

    # ------------------------------------------------------------------ the loop
    def self_consistent_field(
        self,
        p0: torch.Tensor,
        mu0: torch.Tensor,
        external: torch.Tensor,
        geometry: RankGeometry,
        nodes: NodeContext,
        total_charge: torch.Tensor,
        constant_charge: bool,
        settings: SolverSettings,
    ) -> Tuple[torch.Tensor, torch.Tensor, int, int, List[float]]:
        """Mix ``p ← p + β (G(p) − p)`` (Anderson with history, or linear) from (p0, μ0) until
        ``max|G(p) − p| < scf_tolerance`` (and ``max|Σq − Q| < charge_tolerance`` at constant charge),
        every rank in step. Returns p, μ, the steps taken, a status (:mod:`fpscf.scf.solver`) and the
        residual after each step; on failure p is the last iterate. (TorchScript takes no global
        constants: the statuses are written as numbers.)"""
        x = p0.detach().clone()
        mu = mu0.detach().clone()
        num_graphs = mu.shape[0]
        xs: List[torch.Tensor] = []
        rs: List[torch.Tensor] = []
        history: List[float] = []
        best = math.inf
        beta = settings.mixing_parameter
        for step in range(1, settings.max_scf_steps + 1):
            base = self.base_features(x, external, geometry)[1].detach()
            if constant_charge:
                mu = self.solve_fermi_level(base, mu, nodes, total_charge, settings.fermi_newton_steps, False)
            gx = self.response(base, mu, nodes).detach()
            residual = gx - x
            local_max = residual.abs().max() if residual.numel() > 0 else residual.new_zeros(())
            charge_error = residual.new_zeros(())
            if constant_charge and num_graphs > 0:
                charge_error = (self.structure_sums(gx[:, 0], nodes.batch, num_graphs) - total_charge).abs().max()
            both = self.reduction.max_ranks(torch.stack([local_max, charge_error]))
            norm = float(both[0])
            history.append(norm)
            if settings.verbose:
                print("  scf step", step, " max|G(p) - p| =", norm)
            if not math.isfinite(norm):
                return x, mu, step, 1, history  # NON_FINITE
            if norm < settings.scf_tolerance and float(both[1]) < settings.charge_tolerance:
                return gx, mu, step, 0, history  # CONVERGED
            best = min(best, norm)
            if norm > settings.divergence_factor * max(best, settings.scf_tolerance):
                return x, mu, step, 2, history  # DIVERGED
            if settings.anderson_history == 0:
                x = x + beta * residual
                continue
            xs.append(x.reshape(-1).clone())
            rs.append(residual.reshape(-1).clone())
            if len(xs) > settings.anderson_history + 1:
                xs.pop(0)
                rs.pop(0)
            if len(xs) == 1:
                x = x + beta * residual
            else:
                products = self.reduction.sum_ranks(anderson_products(xs, rs))
                x = anderson_step(xs, rs, beta, products).reshape(x.shape)
        return x, mu, settings.max_scf_steps, 3, history  # NOT_CONVERGED

    # ------------------------------------------------------------------ augmented map and adjoint
    def augmented_state(self, p: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """``x = (p, μ)`` flat: this rank's multipoles, then the Fermi levels on the owning rank
        (zeros elsewhere)."""
        return torch.cat([p.reshape(-1), mu * self.reduction.owns_globals(mu)])

    def split_state(self, x: torch.Tensor, num_atoms: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(p (N, K), μ (B,)) of an augmented state; μ reaches every rank through the reduction."""
        size = num_atoms * self.num_coefficients
        p = x[:size].reshape(num_atoms, self.num_coefficients)
        mu = self.reduction.sum_ranks(x[size:] * self.reduction.owns_globals(x))
        return p, mu

    def charge_condition(
        self, p_new: torch.Tensor, mu: torch.Tensor, batch: torch.Tensor, total_charge: torch.Tensor,
        slope: torch.Tensor,
    ) -> torch.Tensor:
        """The Fermi-level rows of the augmented map, ``μ − (Σq(G) − Q)/s`` (B,), on the owning rank."""
        charge = self.structure_sums(p_new[:, 0], batch, mu.shape[0]) - total_charge
        return (mu - charge / slope) * self.reduction.owns_globals(mu)

    def augmented_map(
        self, x: torch.Tensor, external: torch.Tensor, geometry: RankGeometry, nodes: NodeContext,
        total_charge: torch.Tensor, slope: torch.Tensor,
    ) -> torch.Tensor:
        """``F(x)`` (flat, the size of x) of the constant-charge SCF."""
        p, mu = self.split_state(x, nodes.local.shape[0])
        p_new = self.response(self.base_features(p, external, geometry)[1], mu, nodes)
        return torch.cat([p_new.reshape(-1), self.charge_condition(p_new, mu, nodes.batch, total_charge, slope)])

    def solve_adjoint(
        self, rhs: torch.Tensor, initial: torch.Tensor, output: torch.Tensor, x: torch.Tensor, settings: SolverSettings
    ) -> Tuple[torch.Tensor, List[float], int, bool]:
        """λ with ``(I − ∂F/∂x)ᵀ λ = rhs`` by GMRES on the retained graph ``output = F(x)``."""
        return self.krylov.gmres(
            rhs, initial, output, x, 1.0, -1.0, settings.linear_rtol, settings.linear_max_iterations,
            settings.linear_restart,
        )

    # ------------------------------------------------------------------ energy
    def node_energies(
        self,
        p: torch.Tensor,
        mu: torch.Tensor,
        hartree: torch.Tensor,
        base: torch.Tensor,
        external: torch.Tensor,
        nodes: NodeContext,
        readout_edges: torch.Tensor,
    ) -> torch.Tensor:
        """Per-atom energies (N,) eV of density p: reference + local + field readout + Hartree
        ``½ p·f_0`` + applied field ``p·φ_ext`` (the short-range repulsion is the caller's)."""
        k = self.num_coefficients
        e_hartree = 0.5 * (p * hartree[:, 0, :k]).sum(-1)
        e_field = (p * external[:, 0, :k]).sum(-1)
        if self.strict_readout:
            response, bias = self.update.embedding.response(nodes.scalars)
            e_readout = self.field_readout(p, nodes.local, response, bias, self.feature_norms)
        else:
            features = self.update_features(base, mu, nodes.batch)
            e_readout = self.field_readout(nodes.scalars, p, nodes.local, features, readout_edges)
        local_energy = self.local_energy(nodes.scalars).squeeze(-1)
        return self.atomic_energies.to(p.dtype)[nodes.species] + local_energy + e_readout + e_hartree + e_field

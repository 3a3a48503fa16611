"""An analytic spin model with self-consistent moments in a magnetic field.

Classical non-collinear moments m_i (μ_B, axial vectors) on atoms, with the energy (eV)

    E(m; r, B) = Σ_i (a |m_i|² + b |m_i|⁴) − Σ_{i<j} J(r_ij) m_i·m_j − μ_B B·Σ_i m_i

``J(r) = J₀ (1 − (r/r_c)²)³`` for r < r_c (a smooth Heisenberg exchange), a < 0 < b a Landau
single-site term (moments of size √(−a/2b) without exchange and field), B in T (axial), μ_B in eV/T.
The equilibrium moments m*(r, B) minimise E: like the fpscf density, they are self-consistent
variables that respond to the field. Everything follows from E by exact derivatives:
magnetic forces −∂E/∂m_i (eV/μ_B), the magnetic moment M = −∂E*/∂B / μ_B = Σ m*_i (μ_B), and the
susceptibility −∂²E*/∂B∂B (eV/T²) through the implicit function theorem.

E is invariant when positions, moments and B rotate together (proper or improper rotations, with
m and B as axial vectors: an inversion leaves them unchanged) and under time reversal (m, B) →
(−m, −B). Pure torch, float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fpscf.units import BOHR_MAGNETON


@dataclass(frozen=True)
class HeisenbergZeeman:
    """Parameters: exchange J₀ (eV/μ_B², > 0 ferromagnetic), cutoff r_c (Å), Landau a (eV/μ_B², < 0)
    and b (eV/μ_B⁴, > 0)."""

    exchange: float = 0.01
    cutoff: float = 3.5
    quadratic: float = -0.04
    quartic: float = 0.01

    def __post_init__(self) -> None:
        if not self.cutoff > 0 or not self.quartic > 0:
            raise ValueError(f"cutoff and quartic must be > 0, got {self.cutoff!r}, {self.quartic!r}")

    def _pairs(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = positions.shape[0]
        i, j = torch.triu_indices(n, n, offset=1)
        distance = torch.linalg.norm(positions[j] - positions[i], dim=-1)
        x = distance / self.cutoff
        weight = torch.where(x < 1.0, (1.0 - x * x) ** 3, torch.zeros_like(x))
        return i, j, self.exchange * weight

    def energy(self, positions: torch.Tensor, moments: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        """E (eV) of positions (N, 3) Å (an isolated cluster), moments (N, 3) μ_B and B (3,) T."""
        i, j, coupling = self._pairs(positions)
        size2 = (moments * moments).sum(-1)
        single = (self.quadratic * size2 + self.quartic * size2 * size2).sum()
        exchange = (coupling * (moments[i] * moments[j]).sum(-1)).sum()
        return single - exchange - BOHR_MAGNETON * (field * moments.sum(0)).sum()

    def relax(
        self, positions: torch.Tensor, field: torch.Tensor, initial: torch.Tensor | None = None,
        tolerance: float = 1e-12, max_steps: int = 100,
    ) -> torch.Tensor:
        """Equilibrium moments m* (N, 3) μ_B by Newton steps on ∂E/∂m = 0 (from ``initial``, or
        moments along B, or along z without a field)."""
        n = positions.shape[0]
        if initial is None:
            direction = field / torch.linalg.norm(field) if float(torch.linalg.norm(field)) > 0 else field.new_tensor([0.0, 0.0, 1.0])
            size = (-self.quadratic / (2 * self.quartic)) ** 0.5 if self.quadratic < 0 else 1.0
            initial = direction.expand(n, 3) * size
        m = initial.detach().clone().reshape(-1)
        pos, b = positions.detach(), field.detach()
        for _ in range(max_steps):
            gradient = torch.func.grad(lambda v: self.energy(pos, v.reshape(n, 3), b))(m)
            if float(gradient.abs().max()) < tolerance:
                return m.reshape(n, 3)
            hessian = torch.func.hessian(lambda v: self.energy(pos, v.reshape(n, 3), b))(m)
            m = m - torch.linalg.solve(hessian, gradient)
        raise RuntimeError(
            f"moments did not relax in {max_steps} Newton steps (max |∂E/∂m| {float(gradient.abs().max()):.2e} eV/μ_B)"
        )

    def constrained_label(self, atoms, moments, field_T) -> dict[str, np.ndarray | float]:  # noqa: ANN001
        """Labels at fixed moments (N, 3) μ_B (constrained moments): energy (eV), forces (N, 3) eV/Å
        and the magnetic forces −∂E/∂m_i (N, 3) eV/μ_B."""
        positions = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
        m = torch.tensor(np.asarray(moments, float), dtype=torch.float64, requires_grad=True)
        energy = self.energy(positions, m, torch.tensor(np.asarray(field_T, float), dtype=torch.float64))
        grad_pos, grad_m = torch.autograd.grad(energy, (positions, m))
        return {"energy": float(energy.detach()), "forces": (-grad_pos).numpy(), "noncollinear_magnetic_forces": (-grad_m).numpy()}

    def label(self, atoms, field_T) -> dict[str, np.ndarray | float]:  # noqa: ANN001
        """Reference labels of an ASE cluster in a field B (3,) T at the equilibrium moments:
        energy (eV), forces (N, 3) eV/Å, magmoms (N, 3) μ_B, magnetic_moment (3,) μ_B,
        magnetic_susceptibility (3, 3) eV/T² (−∂²E/∂B∂B)."""
        positions = torch.tensor(atoms.positions, dtype=torch.float64)
        field = torch.tensor(np.asarray(field_T, float), dtype=torch.float64)
        moments = self.relax(positions, field)
        n = len(atoms)

        # at the minimum ∂E/∂m = 0, so dE*/dθ = ∂E/∂θ at the fixed moments
        pos = positions.clone().requires_grad_(True)
        b = field.clone().requires_grad_(True)
        energy = self.energy(pos, moments, b)
        grad_pos, grad_b = torch.autograd.grad(energy, (pos, b))
        # susceptibility: d²E*/dB² = ∂²E/∂B² + ∂²E/∂B∂m · dm*/dB, dm*/dB = −H⁻¹ ∂²E/∂m∂B
        flat = moments.reshape(-1)
        hessian = torch.func.hessian(lambda v: self.energy(positions, v.reshape(n, 3), field))(flat)
        mixed = torch.func.jacfwd(
            lambda bb: torch.func.grad(lambda v: self.energy(positions, v.reshape(n, 3), bb))(flat)
        )(field)  # (3N, 3) ∂²E/∂m∂B
        second = -mixed.T @ torch.linalg.solve(hessian, mixed)  # ∂²E/∂B² at fixed m is zero
        return {
            "energy": float(energy.detach()),
            "forces": (-grad_pos).numpy(),
            "magmoms": moments.numpy(),
            "magnetic_moment": (-grad_b / BOHR_MAGNETON).numpy(),
            "magnetic_susceptibility": (-second).numpy(),
        }


#: A paramagnet near its critical point (M(B) linear at low field, saturating at high field): the
#: reference of the magnetic training example and tests.
PARAMAGNET = HeisenbergZeeman(exchange=0.002, quadratic=0.004, quartic=0.01)


def random_cluster(rng: np.random.Generator, n_atoms: int, symbol: str = "Fe", box: float = 3.6, min_distance: float = 2.0):  # noqa: ANN201
    """An ase.Atoms cluster of ``n_atoms`` placed at random in a cube of side ``box`` Å, no two
    atoms closer than ``min_distance`` Å."""
    from ase import Atoms

    for _ in range(1000):
        positions = rng.uniform(0.0, box, size=(n_atoms, 3))
        gaps = np.linalg.norm(positions[:, None] - positions[None], axis=-1) + np.eye(n_atoms) * 1e9
        if gaps.min() >= min_distance:
            return Atoms(f"{symbol}{n_atoms}", positions=positions)
    raise RuntimeError(f"could not place {n_atoms} atoms {min_distance} Å apart in a {box} Å box; enlarge the box")


def spin_dataset(
    reference: HeisenbergZeeman, n_structures: int, seed: int = 0, *, max_field: float = 200.0,
    constrained_fraction: float = 0.5, atoms_range: tuple[int, int] = (2, 5), symbol: str = "Fe",
) -> list:
    """Labelled clusters for training a magnetic model: a fraction with relaxed moments in a random
    field |B| ≤ ``max_field`` T (labels energy, forces, magmoms, magnetic_moment; ``info["magnetic_field"]``),
    the rest with random constrained moments at B = 0 (energy, forces, magmoms = the moments,
    noncollinear_magnetic_forces). Every structure has ``spin_on`` True."""
    rng = np.random.default_rng(seed)
    structures = []
    for index in range(n_structures):
        atoms = random_cluster(rng, int(rng.integers(atoms_range[0], atoms_range[1] + 1)), symbol)
        atoms.info["spin_on"] = True
        if index < round(constrained_fraction * n_structures):
            moments = rng.normal(scale=0.8, size=(len(atoms), 3))
            labels = reference.constrained_label(atoms, moments, np.zeros(3))
            atoms.arrays["magmoms"] = moments
            atoms.arrays["noncollinear_magnetic_forces"] = labels["noncollinear_magnetic_forces"]
        else:
            direction = rng.normal(size=3)
            field = direction / np.linalg.norm(direction) * rng.uniform(0.0, max_field)
            labels = reference.label(atoms, field)
            atoms.info["magnetic_field"] = field
            atoms.arrays["magmoms"] = labels["magmoms"]
            atoms.info["magnetic_moment"] = labels["magnetic_moment"]
        atoms.info["energy"] = labels["energy"]
        atoms.arrays["forces"] = labels["forces"]
        structures.append(atoms)
    return structures

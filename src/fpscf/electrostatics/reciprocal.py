"""Pure-torch reciprocal-space sums for Gaussian multipoles in a periodic cell.

The Hartree potential of the Gaussian density is summed directly over reciprocal vectors with
``|k| ≤ k_cut`` (the Gaussian smearing makes the sum converge; no real-space part is needed):
``v(r) = (1/Ω) Σ_{k≠0} 4π k_e ρ(k)/k² e^{ik·r}`` with the structure factor
``ρ(k) = e^{−σ²k²/2} Σ_j e^{−ik·r_j} (q_j − i k·d_j − ½ k·Θ_j·k)``. The k = 0 term is dropped
(neutralising background, zero mean potential). Only half of k-space is stored (ρ(−k) = ρ(k)*).

Everything here is plain torch so it can be exported; the structure factor is a sum over atoms, so
it can be accumulated per MPI rank and all-reduced.
"""


import math
from typing import NamedTuple, Optional

import torch


def reciprocal_lattice(cell: torch.Tensor) -> torch.Tensor:
    """Reciprocal lattice vectors as rows, ``2π (cell⁻¹)ᵀ``, (3, 3) Å⁻¹; cell rows are lattice vectors."""
    return 2.0 * math.pi * torch.linalg.inv(cell).transpose(-1, -2)


def half_space_miller_indices(cell: torch.Tensor, k_cutoff: float) -> torch.Tensor:
    """Integer triples n (K, 3) with ``0 < |n·B| ≤ k_cutoff`` in one half of k-space."""
    with torch.no_grad():
        cell64 = cell.detach().to(torch.float64)
        lengths = torch.linalg.norm(cell64, dim=-1)
        n_max: list[int] = torch.floor(k_cutoff * lengths / (2.0 * math.pi)).to(torch.long).tolist()
        grid = torch.cartesian_prod(
            torch.arange(-n_max[0], n_max[0] + 1, device=cell.device),
            torch.arange(-n_max[1], n_max[1] + 1, device=cell.device),
            torch.arange(-n_max[2], n_max[2] + 1, device=cell.device),
        ).reshape(-1, 3)
        first_nonzero = torch.where(
            grid[:, 0] != 0, grid[:, 0], torch.where(grid[:, 1] != 0, grid[:, 1], grid[:, 2])
        )
        grid = grid[first_nonzero > 0]
        k = grid.to(torch.float64) @ reciprocal_lattice(cell64)
        grid = grid[(k * k).sum(-1) <= k_cutoff * k_cutoff]
    return grid


class ReciprocalGeometry(NamedTuple):
    """Geometry-only quantities of one periodic structure, reused at every SCF step.

    k: (K, 3) Å⁻¹; k2: (K,); cos/sin: (N, K) of k·r_i; green: (K,) ``2·4πk_e e^{−σ²k²/2}/(Ω k²)``
    (half-space factor 2 included); receiver_damping: (W, K) ``e^{−w²k²/2}``;
    quadrupole_harmonics: (K, 5) ``k·M_m·k`` or None; volume: () Å³.
    """

    k: torch.Tensor
    k2: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    green: torch.Tensor
    source_damping: torch.Tensor
    receiver_damping: torch.Tensor
    quadrupole_harmonics: Optional[torch.Tensor]
    volume: torch.Tensor


def detach_reciprocal(geometry: ReciprocalGeometry) -> ReciprocalGeometry:
    """The same geometry cut from autograd (for SCF steps that need no derivatives)."""
    harmonics = geometry.quadrupole_harmonics
    return ReciprocalGeometry(
        k=geometry.k.detach(),
        k2=geometry.k2.detach(),
        cos=geometry.cos.detach(),
        sin=geometry.sin.detach(),
        green=geometry.green.detach(),
        source_damping=geometry.source_damping.detach(),
        receiver_damping=geometry.receiver_damping.detach(),
        quadrupole_harmonics=None if harmonics is None else harmonics.detach(),
        volume=geometry.volume.detach(),
    )


def prepare_reciprocal(
    positions: torch.Tensor,
    cell: torch.Tensor,
    miller: torch.Tensor,
    smearing_width: float,
    receiver_widths: torch.Tensor,
    quadrupole_matrices: torch.Tensor | None,
    coulomb_constant: float,
) -> ReciprocalGeometry:
    """Compute the k-vectors (differentiably from ``cell``) and phase factors for one structure.

    positions: (N, 3) Å; cell: (3, 3) Å; miller: (K, 3) integers; receiver_widths: (W,) Å.
    """
    k = miller.to(cell.dtype) @ reciprocal_lattice(cell)
    k2 = (k * k).sum(-1)
    phase = positions @ k.T
    volume = torch.abs(torch.linalg.det(cell))
    source_damping = torch.exp(-0.5 * smearing_width**2 * k2)
    green = 2.0 * 4.0 * math.pi * coulomb_constant / (volume * k2)
    receiver_damping = torch.exp(-0.5 * receiver_widths[:, None] ** 2 * k2[None, :])
    harmonics: Optional[torch.Tensor] = None
    if quadrupole_matrices is not None:
        harmonics = torch.einsum("ka,mab,kb->km", k, quadrupole_matrices.to(k.dtype), k)
    return ReciprocalGeometry(
        k=k,
        k2=k2,
        cos=torch.cos(phase),
        sin=torch.sin(phase),
        green=green,
        source_damping=source_damping,
        receiver_damping=receiver_damping,
        quadrupole_harmonics=harmonics,
        volume=volume,
    )


def structure_factor(
    geometry: ReciprocalGeometry, multipoles: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts of ``Σ_j e^{−ik·r_j}(q − i k·d − ½ kΘk)`` (no smearing), each (K,).

    This is the only sum over atoms: in a distributed run each rank sums its own atoms and the
    two (K,) vectors are all-reduced.
    """
    width = multipoles.shape[-1]
    even = multipoles[:, :1].expand(-1, geometry.k.shape[0])
    harmonics = geometry.quadrupole_harmonics
    if width >= 9 and harmonics is not None:
        even = even - 0.5 * multipoles[:, 4:9] @ harmonics.T
    real = (even * geometry.cos).sum(0)
    imag = -(even * geometry.sin).sum(0)
    if width >= 4:
        odd = multipoles[:, 1:4] @ geometry.k.T  # (N, K)
        real = real - (odd * geometry.sin).sum(0)
        imag = imag - (odd * geometry.cos).sum(0)
    return real, imag


def reciprocal_potential_features(
    geometry: ReciprocalGeometry,
    structure_real: torch.Tensor,
    structure_imag: torch.Tensor,
    receiver_max_l: int,
) -> torch.Tensor:
    """Hartree potential projected on receiver Gaussian multipoles at every atom.

    Returns (N, W, (receiver_max_l + 1)²): per receiver width the smoothed potential (V),
    its gradient (V/Å) and the ``2e`` components of its Hessian (V/Å², ``½ M_m : ∇∇v``).
    Includes every atom's own contribution (self-interaction).
    """
    weight = geometry.green * geometry.source_damping
    v_real = weight * structure_real
    v_imag = weight * structure_imag
    x_real = v_real * geometry.cos - v_imag * geometry.sin  # Re[v(k) e^{ik·r_i}]  (N, K)
    damping = geometry.receiver_damping  # (W, K)
    parts = [(x_real @ damping.T).unsqueeze(-1)]
    if receiver_max_l >= 1:
        x_imag = v_real * geometry.sin + v_imag * geometry.cos  # Im[v(k) e^{ik·r_i}]
        parts.append(-torch.einsum("nk,wk,ka->nwa", x_imag, damping, geometry.k))
    if receiver_max_l >= 2:
        harmonics = geometry.quadrupole_harmonics
        if harmonics is None:
            raise ValueError("quadrupole harmonics were not prepared for l = 2 receivers")
        parts.append(-0.5 * torch.einsum("nk,wk,km->nwm", x_real, damping, harmonics))
    return torch.cat(parts, dim=-1)


def reciprocal_energy(
    geometry: ReciprocalGeometry, structure_real: torch.Tensor, structure_imag: torch.Tensor
) -> torch.Tensor:
    """Hartree energy ``½∫ρv`` (eV) including self-interaction, from the structure factor."""
    weight = geometry.green * geometry.source_damping**2
    return 0.5 * (weight * (structure_real**2 + structure_imag**2)).sum()

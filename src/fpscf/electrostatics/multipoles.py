"""Gaussian multipole coefficients: layout and conversions.

Per-atom multipoles are stored as e3nn irreps ``0e + 1o + 2e`` truncated at ``l_max``, shape
``(N, (l_max + 1)**2)``:

* ``[:, 0]`` charge q (e);
* ``[:, 1:4]`` dipole d (e·Å) in Cartesian ``(x, y, z)`` order (e3nn >= 0.6 order of ``1o``);
* ``[:, 4:9]`` quadrupole coefficients c_m (e·Å²) in e3nn's component-normalised ``2e`` basis,
  defined through the traceless second moment ``Θ_ab = ∫ ρ (r_a r_b − δ_ab r²/3)`` by
  ``k·Θ·k = Σ_m c_m Y_2m(k)`` (``Y_2m`` the homogeneous, component-normalised e3nn polynomial).

The density of atom i is ``ρ_i(r) = [q − d·∇ + ½ Θ:∇∇] g(r − r_i; σ)`` with ``g`` the normalised
Gaussian of standard deviation σ, so each basis function carries exactly one unit of its multipole.
"""

from __future__ import annotations

import torch
from e3nn import o3


def num_multipole_coefficients(l_max: int) -> int:
    """Number of coefficients ``(l_max + 1)**2`` of multipoles up to ``l_max``."""
    if l_max not in (0, 1, 2):
        raise ValueError(f"multipole l_max must be 0, 1 or 2, got {l_max!r}")
    return (l_max + 1) ** 2


def l_block(coefficients: torch.Tensor, l: int) -> torch.Tensor:
    """The ``2l+1`` components of degree ``l`` in the last dimension of e3nn-ordered coefficients
    ``(..., (l_max+1)²)`` (a view; TorchScript-compatible, unlike slice objects)."""
    return coefficients.narrow(-1, l * l, 2 * l + 1)


def multipole_irreps(l_max: int) -> o3.Irreps:
    """e3nn irreps ``0e + 1o + 2e`` truncated at ``l_max``."""
    num_multipole_coefficients(l_max)
    return o3.Irreps("+".join(f"1x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(l_max + 1)))


def quadrupole_basis_matrices(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Symmetric traceless matrices ``M_m`` (5, 3, 3) with ``k·M_m·k = Y_2m(k)`` (e3nn, component).

    They satisfy ``M_m : M_n = 15/2 δ_mn``. The quadrupole tensor of coefficients c is
    ``Θ = Σ_m c_m M_m``.
    """
    eye = torch.eye(3, dtype=torch.float64)
    sh = lambda v: o3.spherical_harmonics(2, v, normalize=False, normalization="component")  # noqa: E731
    diag = sh(eye)  # (3, 5): Y(e_a) = M_aa
    mats = torch.zeros(5, 3, 3, dtype=torch.float64)
    for a in range(3):
        mats[:, a, a] = diag[a]
        for b in range(a + 1, 3):
            off = (sh((eye[a] + eye[b])[None])[0] - diag[a] - diag[b]) / 2.0
            mats[:, a, b] = off
            mats[:, b, a] = off
    return mats.to(dtype)


#: ``M_m : M_n`` for the component-normalised basis (see :func:`quadrupole_basis_matrices`).
QUADRUPOLE_GRAM: float = 7.5


def split_multipoles(
    multipoles: torch.Tensor, quadrupole_matrices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Split ``(N, K)`` coefficients into charge (N,), dipole (N, 3) and Θ (N, 3, 3) (or None)."""
    width = multipoles.shape[-1]
    charges = multipoles[:, 0]
    dipoles = multipoles[:, 1:4] if width >= 4 else None
    quadrupoles = (
        torch.einsum("nm,mab->nab", multipoles[:, 4:9], quadrupole_matrices) if width >= 9 else None
    )
    return charges, dipoles, quadrupoles

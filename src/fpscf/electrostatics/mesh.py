"""Smooth particle-mesh Ewald (SPME) for Gaussian charges and dipoles, in plain torch (TorchScript).

The same potential projections as :mod:`fpscf.electrostatics.reciprocal`, but with the structure
factor interpolated on a grid (cardinal B-splines of even order p, Essmann et al. 1995) and the
k-sum done by FFT: cost O(N p³ + M log M) for M grid points instead of O(N K). Each atom's
multipoles are spread as ``q W + d·∇W`` (W the product of B-splines), the grid is transformed,
multiplied by ``g(k) |b(k)|²`` with ``g(k) = 4πk_e e^{−s²k²/2}/(Ω k²)`` per interaction width s,
and transformed back; values and gradients at the atoms come from the same B-splines. The grid
sum is over atoms, so in a distributed run each rank spreads its own atoms and the grid is
all-reduced (one all-reduce per SCF step, as for the structure factor).

Multipoles up to l = 1 and receivers up to l = 1 (charges, dipoles; potential and field).
"""

import math
from typing import List, NamedTuple

import torch

from fpscf.electrostatics.reciprocal import reciprocal_lattice


class MeshGeometry(NamedTuple):
    """Geometry-only mesh data of one periodic cell, reused at every SCF step.

    index: (N, p³) flat grid indices of each atom's stencil; weights: (N, p³) W; gradients:
    (N, p³, 3) ∇_r W (Å⁻¹); kernel: (C, K1, K2, K3//2+1) ``g(k)|b(k)|²`` for C interaction widths
    (V·Å³ per e·Å³ of grid density); shape: [K1, K2, K3].
    """

    index: torch.Tensor
    weights: torch.Tensor
    gradients: torch.Tensor
    kernel: torch.Tensor
    shape: List[int]


def detach_mesh(mesh: MeshGeometry) -> MeshGeometry:
    """The same mesh geometry cut from autograd (for SCF steps that need no derivatives)."""
    return MeshGeometry(
        index=mesh.index, weights=mesh.weights.detach(), gradients=mesh.gradients.detach(),
        kernel=mesh.kernel.detach(), shape=mesh.shape,
    )


def _bspline(order: int, x: torch.Tensor) -> torch.Tensor:
    """Cardinal B-spline M_order(x), support [0, order] (upward recursion from M_2)."""
    shifted = [torch.clamp(1.0 - torch.abs(x - j - 1.0), min=0.0) for j in range(order - 1)]  # M_2(x - j)
    for n in range(3, order + 1):
        shifted = [
            ((x - j) * shifted[j] + (n - (x - j)) * shifted[j + 1]) / (n - 1) for j in range(order - n + 1)
        ]
    return shifted[0]


def grid_shape(cell: torch.Tensor, spacing: float) -> List[int]:
    """Grid points per cell vector: ≥ |a_d|/spacing, rounded up to a product of 2, 3 and 5 (even)."""
    shape: List[int] = []
    lengths: List[float] = torch.linalg.norm(cell.detach(), dim=-1).tolist()
    for length in lengths:
        n = max(8, int(math.ceil(length / spacing)))
        while True:
            m = n
            for prime in [2, 3, 5]:
                while m % prime == 0:
                    m = m // prime
            if m == 1 and n % 2 == 0:
                break
            n += 1
        shape.append(n)
    return shape


def _spline_moduli(order: int, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``|b(m)|²`` for m = 0..size−1: ``1 / |Σ_j M_p(j+1) e^{2πi m j/size}|²``, (size,)."""
    j = torch.arange(order - 1, dtype=dtype, device=device)
    values = _bspline(order, j + 1.0)
    m = torch.arange(size, dtype=dtype, device=device)
    phase = 2.0 * math.pi * m[:, None] * j[None, :] / size
    real = (values * torch.cos(phase)).sum(-1)
    imag = (values * torch.sin(phase)).sum(-1)
    return 1.0 / (real * real + imag * imag)


def prepare_mesh(
    positions: torch.Tensor,
    cell: torch.Tensor,
    shape: List[int],
    order: int,
    interaction_widths: torch.Tensor,
    coulomb_constant: float,
) -> MeshGeometry:
    """Stencils and kernels, differentiable in ``positions`` (N, 3) Å and ``cell`` (3, 3) Å."""
    dtype = positions.dtype
    device = positions.device
    sizes = torch.tensor(shape, dtype=dtype, device=device)
    inverse = torch.linalg.inv(cell)
    scaled = (positions @ inverse) * sizes  # (N, 3) grid units
    base = torch.floor(scaled.detach())
    offsets = torch.arange(order, dtype=dtype, device=device)
    x = (scaled - base)[:, :, None] + offsets  # (N, 3, p): distance from grid point base - j
    values = _bspline(order, x)
    slopes = _bspline(order - 1, x) - _bspline(order - 1, x - 1.0)  # dM/du
    points = torch.remainder(base.to(torch.long)[:, :, None] - offsets.to(torch.long), sizes.to(torch.long)[:, None])
    n = positions.shape[0]
    p = order
    w0, w1, w2 = values[:, 0], values[:, 1], values[:, 2]
    d0, d1, d2 = slopes[:, 0], slopes[:, 1], slopes[:, 2]
    weights = (w0[:, :, None, None] * w1[:, None, :, None] * w2[:, None, None, :]).reshape(n, p * p * p)
    du = torch.stack(
        [
            (d0[:, :, None, None] * w1[:, None, :, None] * w2[:, None, None, :]).reshape(n, p * p * p),
            (w0[:, :, None, None] * d1[:, None, :, None] * w2[:, None, None, :]).reshape(n, p * p * p),
            (w0[:, :, None, None] * w1[:, None, :, None] * d2[:, None, None, :]).reshape(n, p * p * p),
        ],
        dim=-1,
    )  # (N, p³, 3) dW/du_d
    gradients = du @ (inverse * sizes).T  # ∂u_d/∂r_a = inverse[a, d] K_d
    index = (
        points[:, 0][:, :, None, None] * (shape[1] * shape[2])
        + points[:, 1][:, None, :, None] * shape[2]
        + points[:, 2][:, None, None, :]
    ).reshape(n, p * p * p)

    m0 = torch.fft.fftfreq(shape[0], 1.0 / shape[0], dtype=dtype, device=device)
    m1 = torch.fft.fftfreq(shape[1], 1.0 / shape[1], dtype=dtype, device=device)
    m2 = torch.fft.rfftfreq(shape[2], 1.0 / shape[2], dtype=dtype, device=device)
    grid = torch.stack(torch.meshgrid(m0, m1, m2, indexing="ij"), dim=-1)  # (K1, K2, K3h, 3)
    k = grid @ reciprocal_lattice(cell)
    k2 = (k * k).sum(-1)
    volume = torch.abs(torch.linalg.det(cell))
    safe = torch.where(k2 > 0, k2, torch.ones_like(k2))
    green = torch.where(k2 > 0, 4.0 * math.pi * coulomb_constant / (volume * safe), torch.zeros_like(k2))
    moduli = (
        _spline_moduli(order, shape[0], dtype, device)[:, None, None]
        * _spline_moduli(order, shape[1], dtype, device)[None, :, None]
        * _spline_moduli(order, shape[2], dtype, device)[None, None, : shape[2] // 2 + 1]
    )
    damping = torch.exp(-0.5 * interaction_widths[:, None, None, None] ** 2 * k2[None])
    return MeshGeometry(index=index, weights=weights, gradients=gradients, kernel=green * moduli * damping, shape=shape)


def spread(mesh: MeshGeometry, multipoles: torch.Tensor) -> torch.Tensor:
    """Grid density (K1·K2·K3,) of charges and dipoles ``multipoles`` (N, 1 or 4) of this rank's atoms."""
    values = multipoles[:, :1] * mesh.weights
    if multipoles.shape[1] >= 4:
        values = values + (mesh.gradients * multipoles[:, None, 1:4]).sum(-1)
    total = mesh.shape[0] * mesh.shape[1] * mesh.shape[2]
    return multipoles.new_zeros(total).index_add(0, mesh.index.reshape(-1), values.reshape(-1))


def mesh_potential_features(mesh: MeshGeometry, density: torch.Tensor, receiver_max_l: int) -> torch.Tensor:
    """Potential projections (N, C, (receiver_max_l+1)²) of the whole grid density (summed over
    ranks) at this rank's atoms, for the C interaction widths of ``mesh.kernel``."""
    shape = mesh.shape
    transformed = torch.fft.rfftn(density.reshape(shape[0], shape[1], shape[2]))
    total = shape[0] * shape[1] * shape[2]
    # real kernel times complex transform, as real arithmetic (autograd's real-complex products
    # are not handled by every TorchScript executor)
    product = torch.view_as_complex((torch.view_as_real(transformed)[None] * mesh.kernel[..., None]).contiguous())
    potentials = torch.fft.irfftn(product, s=[shape[0], shape[1], shape[2]], dim=[1, 2, 3])
    flat = potentials.reshape(-1, total) * total  # (C, M): Σ_m (...) e^{+2πi m·g/K}
    stencil = flat[:, mesh.index]  # (C, N, p³)
    parts: List[torch.Tensor] = [(stencil * mesh.weights[None]).sum(-1).T.unsqueeze(-1)]
    if receiver_max_l >= 1:
        parts.append(torch.einsum("cnp,npa->nca", stencil, mesh.gradients))
    if receiver_max_l >= 2:
        raise ValueError("the mesh electrostatics provide receivers up to l = 1")
    return torch.cat(parts, dim=-1)

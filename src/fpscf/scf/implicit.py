"""Exact derivatives through a converged fixed point (implicit function theorem).

At ``p* = G(p*, θ)``: ``dp*/dθ = (I − ∂G/∂p)⁻¹ ∂G/∂θ``. :func:`attach_implicit_gradient` returns
``G(p*, θ)`` (equal in value to p*) with a hook that replaces the incoming gradient ``g`` by the
adjoint ``λ = (I − ∂G/∂p)ᵀ⁻¹ g``, solved matrix-free with vector–Jacobian products (no N×N
matrix, memory independent of the number of SCF steps). Backpropagating from there through
``G`` gives ``λᵀ ∂G/∂θ``: forces, stress and parameter gradients of the converged energy.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch

from fpscf.scf.settings import SCFSettings
from fpscf.scf.solver import solve_fixed_point


def attach_implicit_gradient(
    update: Callable[[torch.Tensor], torch.Tensor],
    solution: torch.Tensor,
    adjoint_settings: SCFSettings,
) -> torch.Tensor:
    """``G(p*)`` with the implicit-function gradient hook; ``update`` must build a graph to θ."""
    p_star = solution.detach().requires_grad_(True)
    with torch.enable_grad():
        output = update(p_star)
    if not output.requires_grad:
        return output

    def adjoint(grad: torch.Tensor) -> torch.Tensor:
        def transpose_map(lam: torch.Tensor) -> torch.Tensor:
            (vjp,) = torch.autograd.grad(output, p_star, lam, retain_graph=True, allow_unused=True)
            return grad + (vjp if vjp is not None else torch.zeros_like(lam))

        scale = float(grad.abs().max()) if grad.numel() else 0.0
        if scale == 0.0:
            return grad
        settings = replace(adjoint_settings, tolerance=adjoint_settings.tolerance * scale)
        return solve_fixed_point(transpose_map, grad, settings).solution

    # Hook a copy: the VJPs inside the adjoint solve start from ``output`` and must not re-enter it.
    result = output.clone()
    result.register_hook(adjoint)
    return result

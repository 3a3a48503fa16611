"""Exact derivatives of every order through a converged fixed point (implicit function theorem).

At ``x* = G(x*, θ)``: ``dx*/dθ = (I − ∂G/∂x)⁻¹ ∂G/∂θ``. :func:`implicit_fixed_point` returns x*
as a node of the autograd graph whose backward is the adjoint rule

    θ̄ = (∂G/∂θ)ᵀ λ,   λ = (I − ∂G/∂x)ᵀ⁻¹ x̄,

with λ solved matrix-free by GMRES on vector–Jacobian products (no N×N matrix; memory independent
of the number of SCF steps). With ``create_graph=True`` the backward is itself differentiable:
λ is returned as the fixed point of ``H(λ) = x̄ + (∂G/∂x)ᵀ λ`` through the same function, so
second and third derivatives (polarizability, Born charges, Raman tensors, parameter gradients of
force losses) are exact as well, to any order G itself can be differentiated.

Partial derivatives of G (at fixed x, or at fixed θ) are taken with respect to fresh aliases
(``t.view_as(t)``) of its arguments, so the autograd engine never re-enters the implicit node
while forming them, yet the results stay connected to x* and θ for the next order.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from fpscf.scf.krylov import LinearSolveSettings, adjoint_gmres, dense_solve

FixedPointMap = Callable[..., torch.Tensor]


def implicit_fixed_point(
    update: FixedPointMap,
    solution: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    settings: LinearSolveSettings | None = None,
) -> torch.Tensor:
    """x* (value of ``solution``) with exact derivatives with respect to ``inputs``.

    update: ``G(x, *inputs) → x`` (same shape as x); it must use only its arguments (plus
    constants) so that every dependence on θ passes through ``inputs``. solution: the converged
    fixed point, detached. settings: GMRES tolerances (default by dtype).
    """
    settings = settings or LinearSolveSettings.for_dtype(solution.dtype)
    tensors = tuple(inputs)
    if not any(t.requires_grad for t in tensors):
        return solution.detach()
    return _ImplicitFixedPoint.apply(update, settings, solution.detach(), *tensors)


def _aliases(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Fresh graph nodes equal to ``tensors`` (derivatives w.r.t. them are partial derivatives)."""
    return [t.view_as(t) if t.requires_grad else t for t in tensors]


class _ImplicitFixedPoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, update: FixedPointMap, settings: LinearSolveSettings, solution: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        output = solution.clone()
        ctx.update = update
        ctx.settings = settings
        ctx.inputs = inputs  # upstream tensors, kept with their graphs for create_graph backward
        ctx.save_for_backward(output)
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        (solution,) = ctx.saved_tensors
        update, settings, inputs = ctx.update, ctx.settings, ctx.inputs
        create_graph = torch.is_grad_enabled()
        wanted = [i for i, t in enumerate(inputs) if ctx.needs_input_grad[3 + i]]
        grads: list[torch.Tensor | None] = [None] * len(inputs)
        with torch.enable_grad():
            adjoint = _solve_adjoint(update, solution, inputs, grad_output, settings)
            if create_graph:
                adjoint = _ImplicitFixedPoint.apply(
                    _AdjointMap(update), settings, adjoint, grad_output, solution, *inputs
                )
                x = solution
            else:
                x = solution.detach()
            arguments = _aliases(inputs)
            output = update(x, *arguments)
            targets = [arguments[i] for i in wanted]
            if targets and output.requires_grad:
                partial = torch.autograd.grad(
                    output, targets, adjoint, create_graph=create_graph, allow_unused=True
                )
                for i, g in zip(wanted, partial):
                    grads[i] = g
        return (None, None, None, *grads)


def _solve_adjoint(
    update: FixedPointMap,
    solution: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    grad_output: torch.Tensor,
    settings: LinearSolveSettings,
) -> torch.Tensor:
    """λ with ``(I − ∂G/∂x)ᵀ λ = x̄`` at the solution (values only, no graph)."""
    x = solution.detach().requires_grad_(True)
    output = update(x, *[t.detach() for t in inputs])
    if not output.requires_grad:
        return grad_output.detach().clone()

    if settings.method == "gmres":
        return adjoint_gmres(output, x, grad_output.detach(), settings)

    def operator(v: torch.Tensor) -> torch.Tensor:
        (vjp,) = torch.autograd.grad(output, x, v, retain_graph=True, allow_unused=True)
        return v - vjp if vjp is not None else v

    return dense_solve(operator, grad_output.detach())


class _AdjointMap:
    """``H(λ, x̄, x, *θ) = x̄ + (∂G/∂x)ᵀ(x, θ) λ``: the adjoint equation as a fixed-point map, so the
    adjoint itself can be differentiated implicitly (higher-order derivatives)."""

    def __init__(self, update: FixedPointMap) -> None:
        self.update = update

    def __call__(self, adjoint: torch.Tensor, grad_output: torch.Tensor, solution: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        create_graph = torch.is_grad_enabled() and any(
            t.requires_grad for t in (adjoint, grad_output, solution, *inputs)
        )
        with torch.enable_grad():
            x = solution.view_as(solution) if solution.requires_grad else solution.detach().requires_grad_(True)
            output = self.update(x, *inputs)
            if not output.requires_grad:
                return grad_output + torch.zeros_like(adjoint) * adjoint
            (vjp,) = torch.autograd.grad(output, x, adjoint, create_graph=create_graph, allow_unused=True)
        if vjp is None:
            vjp = torch.zeros_like(adjoint)
        return grad_output + vjp

"""Matrix-free GMRES: the linear solves of implicit differentiation through the fixed point.

Solves ``A x = b`` given only products ``v ↦ A v``, with no dense matrix. One implementation,
:class:`KrylovSolver` (TorchScript), runs everywhere: the adjoint of the SCF in the Python model
(:mod:`fpscf.scf.implicit`), in the deployed model LAMMPS runs (:mod:`fpscf.scf.engine`) and the
Newton steps of the magnetic moments. Its operator is ``A v = α v + β (∂y/∂x)ᵀ v`` for a graph
``y(x)`` built by the caller (``α = 1, β = −1``: the adjoint ``(I − ∂G/∂x)ᵀ`` of a fixed-point map;
``α = 0, β = 1`` with y a gradient: a Hessian), and its dot products are summed over ranks by the
injected reduction (:mod:`fpscf.scf.reduction`). :func:`gmres` wraps it for an operator given as a
Python function. Pure torch, so it runs on any device and dtype.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch

from fpscf.errors import FpscfError
from fpscf.scf.reduction import LocalReduction

FAILURE_ACTIONS = ("raise", "warn")
SOLVE_METHODS = ("gmres", "dense")


class LinearSolveError(FpscfError, RuntimeError):
    """GMRES did not reach its tolerance; the message carries the relative residual history."""

    def __init__(self, message: str, residual_history: list[float]) -> None:
        super().__init__(message)
        self.residual_history = residual_history


@dataclass(frozen=True)
class LinearSolveSettings:
    """rtol: accepted ``|b − A x| / |b|``; max_iterations: total matrix–vector products;
    restart: Krylov subspace size before a restart; on_failure: ``raise`` or ``warn``;
    method: ``gmres`` (matrix-free) or ``dense`` (build the n×n matrix column by column and
    LU-solve it: only for small systems, an independent check of GMRES)."""

    rtol: float = 1e-12
    max_iterations: int = 400
    restart: int = 60
    on_failure: str = "raise"
    method: str = "gmres"

    def __post_init__(self) -> None:
        if self.method not in SOLVE_METHODS:
            raise ValueError(f"method must be one of {SOLVE_METHODS}, got {self.method!r}")
        if not self.rtol > 0:
            raise ValueError(f"rtol must be > 0, got {self.rtol!r}")
        if self.restart < 1 or self.max_iterations < 1:
            raise ValueError("restart and max_iterations must be ≥ 1")
        if self.on_failure not in FAILURE_ACTIONS:
            raise ValueError(f"on_failure must be one of {FAILURE_ACTIONS}, got {self.on_failure!r}")

    @staticmethod
    def for_dtype(dtype: torch.dtype, **overrides: object) -> "LinearSolveSettings":
        """Default tolerance for a dtype: 1e-12 in float64, 1e-6 in float32."""
        rtol = 1e-12 if dtype == torch.float64 else 1e-6
        return LinearSolveSettings(**{"rtol": rtol, **overrides})  # type: ignore[arg-type]


class KrylovSolver(torch.nn.Module):
    """Restarted GMRES (TorchScript) for ``A x = b``, ``A v = α v + β (∂y/∂x)ᵀ v``.

    x, b and v are this rank's part of the vector, flattened; dot products are summed over ranks
    with ``reduction`` (default: one process). Gram–Schmidt is done twice per Krylov vector.
    """

    def __init__(self, reduction: Optional[torch.nn.Module] = None) -> None:
        super().__init__()
        self.reduction = reduction if reduction is not None else LocalReduction()

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Global inner product (0-d tensor) of two vectors split over ranks."""
        return self.reduction.sum_ranks((a * b).sum().reshape(1))[0]

    def matvec(self, v: torch.Tensor, output: torch.Tensor, x: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        """``α v + β (∂output/∂x)ᵀ v`` (flat), one vector–Jacobian product on the retained graph."""
        cotangents: List[Optional[torch.Tensor]] = [v.reshape(output.shape)]
        grads = torch.autograd.grad([output], [x], cotangents, retain_graph=True, allow_unused=True)
        product = grads[0]
        if product is None:
            return alpha * v
        return alpha * v + beta * product.detach().reshape(-1)

    def gmres(
        self,
        rhs: torch.Tensor,
        initial: torch.Tensor,
        output: torch.Tensor,
        x: torch.Tensor,
        alpha: float,
        beta: float,
        rtol: float,
        max_iterations: int,
        restart: int,
    ) -> Tuple[torch.Tensor, List[float], int, bool]:
        """Solve from ``initial``; returns the flat solution, the relative residual after each
        product, the number of products and whether ``|b − A x| ≤ rtol |b|`` was reached."""
        b = rhs.detach().reshape(-1)
        solution = initial.detach().reshape(-1).clone()
        b_norm = float(torch.sqrt(self.dot(b, b)))
        if b_norm == 0.0:
            return torch.zeros_like(b), [0.0], 0, True
        if not math.isfinite(b_norm):  # a non-finite energy upstream: reported where results are checked
            return torch.zeros_like(b), [math.nan], 0, True
        # CPU lstsq's default driver (gelsy, pivoted QR) is not bitwise reproducible from call to call;
        # gelsd (SVD) is, and it handles a rank-deficient (breakdown) Hessenberg matrix.
        driver: Optional[str] = "gelsd" if b.device.type == "cpu" else None
        start_from_zero = float(self.dot(solution, solution)) == 0.0
        history: List[float] = []
        products = 0
        while True:
            if products == 0 and start_from_zero:
                residual = b.clone()
            else:
                residual = b - self.matvec(solution, output, x, alpha, beta)
            beta_norm = float(torch.sqrt(self.dot(residual, residual)))
            history.append(beta_norm / b_norm)
            if beta_norm <= rtol * b_norm:
                return solution, history, products, True
            if products >= max_iterations or not math.isfinite(beta_norm):
                return solution, history, products, False
            basis: List[torch.Tensor] = [residual / beta_norm]
            hessenberg = torch.zeros(restart + 1, restart, dtype=b.dtype, device=b.device)
            target = torch.zeros(restart + 1, dtype=b.dtype, device=b.device)
            target[0] = beta_norm
            coefficients = target[:0]
            for j in range(restart):
                w = self.matvec(basis[j], output, x, alpha, beta)
                products += 1
                for _ in range(2):  # Gram–Schmidt twice keeps the basis orthogonal to round-off
                    for i in range(len(basis)):
                        h = self.dot(basis[i], w)
                        hessenberg[i, j] = hessenberg[i, j] + h
                        w = w - h * basis[i]
                norm = torch.sqrt(self.dot(w, w))
                hessenberg[j + 1, j] = norm
                small = hessenberg[: j + 2, : j + 1]
                coefficients = torch.linalg.lstsq(small, target[: j + 2].unsqueeze(1), driver=driver).solution[:, 0]
                estimate = float(torch.linalg.vector_norm(target[: j + 2] - small @ coefficients))
                history.append(estimate / b_norm)
                if estimate <= rtol * b_norm or float(norm) <= 1e-300 or products >= max_iterations:
                    break
                basis.append(w / norm)
            solution = solution + torch.stack(basis[: coefficients.numel()], dim=1) @ coefficients
            if products >= max_iterations:
                residual = b - self.matvec(solution, output, x, alpha, beta)
                history.append(float(torch.sqrt(self.dot(residual, residual))) / b_norm)
                return solution, history, products, history[-1] <= rtol
        return solution, history, products, False  # not reached (TorchScript wants a return on every path)


class _FunctionOperator(KrylovSolver):
    """:class:`KrylovSolver` whose product is a Python function of v (eager use only)."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], shape: torch.Size) -> None:
        super().__init__()
        self.function = function
        self.shape = shape

    def matvec(self, v: torch.Tensor, output: torch.Tensor, x: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
        return self.function(v.reshape(self.shape)).detach().reshape(-1)


def _failure(history: list[float], products: int, settings: LinearSolveSettings) -> None:
    message = (
        f"linear solve of the implicit derivative did not converge: relative residual "
        f"{history[-1]:.3e} > rtol {settings.rtol:.1e} after {products} products (history "
        f"{', '.join(f'{r:.2e}' for r in history[-8:])}). The SCF map may be close to unstable at this "
        "geometry (|∂G/∂p| near 1): check the SCF convergence and the structure."
    )
    if settings.on_failure == "raise":
        raise LinearSolveError(message, history)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def gmres(
    matvec: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, settings: LinearSolveSettings
) -> tuple[torch.Tensor, list[float]]:
    """Solve ``matvec(x) = rhs`` (any shape) by restarted GMRES (:class:`KrylovSolver`) from zero;
    returns x and the relative residual after each matrix–vector product."""
    solver = _FunctionOperator(matvec, rhs.shape)
    dummy = rhs.new_zeros(0)
    x, history, products, converged = solver.gmres(
        rhs, torch.zeros_like(rhs), dummy, dummy, 0.0, 1.0, settings.rtol, settings.max_iterations, settings.restart
    )
    if not converged:
        _failure(history, products, settings)
    return x.reshape(rhs.shape), history


def adjoint_gmres(
    output: torch.Tensor, x: torch.Tensor, rhs: torch.Tensor, settings: LinearSolveSettings
) -> torch.Tensor:
    """λ with ``(I − ∂output/∂x)ᵀ λ = rhs`` (output and x of one size, output's graph retained)."""
    solver = KrylovSolver()
    solution, history, products, converged = solver.gmres(
        rhs, torch.zeros_like(rhs), output, x, 1.0, -1.0, settings.rtol, settings.max_iterations, settings.restart
    )
    if not converged:
        _failure(history, products, settings)
    return solution.reshape(rhs.shape)


def dense_solve(matvec: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor) -> torch.Tensor:
    """Solve ``matvec(x) = rhs`` by building the matrix column by column and LU (small systems;
    the independent check of GMRES behind ``linearize_solve``)."""
    b = rhs.detach().reshape(-1)
    columns = []
    for j in range(b.numel()):
        unit = torch.zeros_like(b)
        unit[j] = 1.0
        columns.append(matvec(unit.reshape(rhs.shape)).detach().reshape(-1))
    matrix = torch.stack(columns, dim=1)
    return torch.linalg.solve(matrix, b).reshape(rhs.shape)

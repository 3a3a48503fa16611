"""Matrix-free GMRES: the linear solves of implicit differentiation through the fixed point.

Solves ``A x = b`` given only ``v ↦ A v`` (a JVP or VJP of the SCF map), with no dense matrix.
Pure torch, so it runs on any device and dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from fpscf.errors import FpscfError

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


def gmres(
    matvec: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, settings: LinearSolveSettings
) -> tuple[torch.Tensor, list[float]]:
    """Solve ``matvec(x) = rhs`` (any shape) by restarted GMRES; returns x and the relative
    residual after each matrix–vector product."""
    b = rhs.detach().reshape(-1)
    b_norm = float(torch.linalg.vector_norm(b))
    x = torch.zeros_like(b)
    history: list[float] = []
    if b_norm == 0.0 or not math.isfinite(b_norm):
        return x.reshape(rhs.shape), [0.0 if b_norm == 0.0 else math.nan]
    # CPU lstsq's default driver (LAPACK gelsy, pivoted QR) is not bitwise reproducible: the same
    # inputs gave results differing by 1e-15 from call to call (up to 1e-6 on ill-conditioned
    # matrices), which made training with implicit stages differ between identical runs. gelsd (SVD)
    # gives the same bits every call and handles a rank-deficient (breakdown) Hessenberg matrix.
    driver = "gelsd" if b.device.type == "cpu" else None
    apply = lambda v: matvec(v.reshape(rhs.shape)).detach().reshape(-1)  # noqa: E731
    products = 0
    while True:
        residual = b - apply(x) if products else b.clone()
        beta = float(torch.linalg.vector_norm(residual))
        history.append(beta / b_norm)
        if beta <= settings.rtol * b_norm:
            return x.reshape(rhs.shape), history
        if products >= settings.max_iterations or not math.isfinite(beta):
            break
        basis = [residual / beta]
        hessenberg = torch.zeros(settings.restart + 1, settings.restart, dtype=b.dtype, device=b.device)
        target = torch.zeros(settings.restart + 1, dtype=b.dtype, device=b.device)
        target[0] = beta
        coefficients = target[:0]
        for j in range(settings.restart):
            w = apply(basis[j])
            products += 1
            for _ in range(2):  # Gram–Schmidt twice keeps the basis orthogonal to round-off
                for i, v in enumerate(basis):
                    h = torch.dot(v, w)
                    hessenberg[i, j] += h
                    w = w - h * v
            norm = torch.linalg.vector_norm(w)
            hessenberg[j + 1, j] = norm
            small_h = hessenberg[: j + 2, : j + 1]
            coefficients = torch.linalg.lstsq(small_h, target[: j + 2, None], driver=driver).solution[:, 0]
            estimate = float(torch.linalg.vector_norm(target[: j + 2] - small_h @ coefficients))
            history.append(estimate / b_norm)
            if estimate <= settings.rtol * b_norm or float(norm) <= 1e-300 or products >= settings.max_iterations:
                break
            basis.append(w / norm)
        x = x + torch.stack(basis[: coefficients.numel()], dim=1) @ coefficients
        if products >= settings.max_iterations:
            residual = b - apply(x)
            history.append(float(torch.linalg.vector_norm(residual)) / b_norm)
            if history[-1] <= settings.rtol:
                return x.reshape(rhs.shape), history
            break
    message = (
        f"linear solve of the implicit derivative did not converge: relative residual "
        f"{history[-1]:.3e} > rtol {settings.rtol:.1e} after {products} products (history "
        f"{', '.join(f'{r:.2e}' for r in history[-8:])}). The SCF map may be close to unstable at this "
        "geometry (|∂G/∂p| near 1): check the SCF convergence and the structure."
    )
    if settings.on_failure == "raise":
        raise LinearSolveError(message, history)
    import warnings

    warnings.warn(message, RuntimeWarning, stacklevel=2)
    return x.reshape(rhs.shape), history


def solve_linear(
    matvec: Callable[[torch.Tensor], torch.Tensor], rhs: torch.Tensor, settings: LinearSolveSettings
) -> torch.Tensor:
    """Solve ``matvec(x) = rhs`` with ``settings.method`` (GMRES or dense LU)."""
    if settings.method == "gmres":
        return gmres(matvec, rhs, settings)[0]
    b = rhs.detach().reshape(-1)
    columns = []
    for j in range(b.numel()):
        unit = torch.zeros_like(b)
        unit[j] = 1.0
        columns.append(matvec(unit.reshape(rhs.shape)).detach().reshape(-1))
    matrix = torch.stack(columns, dim=1)
    return torch.linalg.solve(matrix, b).reshape(rhs.shape)

"""Settings of the SCF loop, validated where they enter, under one set of names.

The same names run from the ASE calculator (``FixedPointCalculator(scf_tolerance=...)``) through
:class:`SCFSettings` and the export header (``fpscf export --scf-tolerance``) to the attributes of
the deployed model that ``pair_style fpscf`` keywords override (``scf_tolerance``, ``max_scf_steps``,
``total_charge``; see lammps_plugin/README.md). :class:`SolverSettings` is the plain tuple the
TorchScript engine (:mod:`fpscf.scf.engine`) reads.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import NamedTuple

from fpscf.errors import InputError

MIXING_SCHEMES = ("linear", "anderson")
FAILURE_ACTIONS = ("raise", "warn")
#: Newton steps on Σq(μ) = Q per SCF step (constant charge): the charge is affine in μ for the
#: linear update and nearly so otherwise, and the SCF loop repeats them at every step.
FERMI_NEWTON_STEPS = 2


class SolverSettings(NamedTuple):
    """What the SCF engine reads (TorchScript): tolerances (e; relative for the linear solve),
    step limits, mixing (``anderson_history`` 0 means linear mixing) and ``verbose`` printing."""

    scf_tolerance: float
    charge_tolerance: float
    max_scf_steps: int
    mixing_parameter: float
    anderson_history: int
    divergence_factor: float
    fermi_newton_steps: int
    linear_rtol: float
    linear_max_iterations: int
    linear_restart: int
    verbose: bool


@dataclass(frozen=True)
class SCFSettings:
    """How the fixed point ``p = G(p)`` is solved.

    scf_tolerance: largest absolute density residual ``|G(p) − p|`` accepted (e, e·Å, e·Å²);
    charge_tolerance: largest ``|Σq − Q|`` accepted in constant-charge mode (e);
    max_scf_steps: iterations before giving up; mixing: ``linear`` or ``anderson`` (Pulay/DIIS on the
    residual history); mixing_parameter: step β of ``p ← p + β (G(p) − p)``; anderson_history:
    number of stored Anderson steps; divergence_factor: stop when the residual grows this much above
    its smallest value; on_failure: ``raise`` (default) or ``warn`` when not converged; verbose:
    print one line per step.
    """

    scf_tolerance: float = 1e-6
    charge_tolerance: float = 1e-8
    max_scf_steps: int = 200
    mixing: str = "anderson"
    mixing_parameter: float = 0.5
    anderson_history: int = 8
    divergence_factor: float = 1e6
    on_failure: str = "raise"
    verbose: bool = False

    def __post_init__(self) -> None:
        for name in ("scf_tolerance", "charge_tolerance", "max_scf_steps", "mixing_parameter", "anderson_history",
                     "divergence_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise InputError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
        if self.mixing not in MIXING_SCHEMES:
            raise InputError(f"mixing must be one of {MIXING_SCHEMES}, got {self.mixing!r}")
        if not 0.0 < self.mixing_parameter <= 1.0:
            raise InputError(f"mixing_parameter must be in (0, 1], got {self.mixing_parameter!r}")
        if not self.scf_tolerance > 0:
            raise InputError(f"scf_tolerance must be > 0, got {self.scf_tolerance!r}")
        if not self.charge_tolerance > 0:
            raise InputError(f"charge_tolerance must be > 0, got {self.charge_tolerance!r}")
        if int(self.max_scf_steps) < 1:
            raise InputError(f"max_scf_steps must be ≥ 1, got {self.max_scf_steps!r}")
        if self.anderson_history < 1:
            raise InputError(f"anderson_history must be ≥ 1, got {self.anderson_history!r}")
        if self.on_failure not in FAILURE_ACTIONS:
            raise InputError(f"on_failure must be one of {FAILURE_ACTIONS}, got {self.on_failure!r}")

    def solver(self, linear_rtol: float, linear_max_iterations: int = 400, linear_restart: int = 60) -> SolverSettings:
        """These settings with those of the adjoint's linear solve, as the engine reads them."""
        return SolverSettings(
            scf_tolerance=float(self.scf_tolerance),
            charge_tolerance=float(self.charge_tolerance),
            max_scf_steps=int(self.max_scf_steps),
            mixing_parameter=float(self.mixing_parameter),
            anderson_history=int(self.anderson_history) if self.mixing == "anderson" else 0,
            divergence_factor=float(self.divergence_factor),
            fermi_newton_steps=FERMI_NEWTON_STEPS,
            linear_rtol=float(linear_rtol),
            linear_max_iterations=int(linear_max_iterations),
            linear_restart=int(linear_restart),
            verbose=bool(self.verbose),
        )

"""Settings of the SCF loop, validated where they enter."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from fpscf.errors import InputError

MIXING_SCHEMES = ("linear", "anderson")
FAILURE_ACTIONS = ("raise", "warn")


@dataclass(frozen=True)
class SCFSettings:
    """How the fixed point ``p = G(p)`` is solved.

    tolerance: largest absolute density residual ``|G(p) − p|`` accepted (e, e·Å, e·Å²);
    charge_tolerance: largest ``|Σq − Q|`` accepted in constant-charge mode (e);
    max_steps: iterations before giving up; mixing: ``linear`` or ``anderson`` (Pulay/DIIS on the
    residual history); mixing_parameter: step β of ``p ← p + β (G(p) − p)``; history: number of
    stored Anderson steps; divergence_factor: stop when the residual grows this much above its
    smallest value; on_failure: ``raise`` (default) or ``warn`` when not converged; verbose: print
    one line per step.
    """

    tolerance: float = 1e-6
    charge_tolerance: float = 1e-8
    max_steps: int = 200
    mixing: str = "anderson"
    mixing_parameter: float = 0.5
    history: int = 8
    divergence_factor: float = 1e6
    on_failure: str = "raise"
    verbose: bool = False

    def __post_init__(self) -> None:
        for name, value in (("scf_tolerance", self.tolerance), ("charge_tolerance", self.charge_tolerance),
                            ("max_scf_steps", self.max_steps), ("mixing_parameter", self.mixing_parameter),
                            ("history", self.history), ("divergence_factor", self.divergence_factor)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise InputError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
        if self.mixing not in MIXING_SCHEMES:
            raise InputError(f"mixing must be one of {MIXING_SCHEMES}, got {self.mixing!r}")
        if not 0.0 < self.mixing_parameter <= 1.0:
            raise InputError(f"mixing_parameter must be in (0, 1], got {self.mixing_parameter!r}")
        if not self.tolerance > 0:
            raise InputError(f"scf_tolerance must be > 0, got {self.tolerance!r}")
        if not self.charge_tolerance > 0:
            raise InputError(f"charge_tolerance must be > 0, got {self.charge_tolerance!r}")
        if int(self.max_steps) < 1:
            raise InputError(f"max_scf_steps must be ≥ 1, got {self.max_steps!r}")
        if self.history < 1:
            raise InputError(f"Anderson history must be ≥ 1, got {self.history!r}")
        if self.on_failure not in FAILURE_ACTIONS:
            raise InputError(f"on_failure must be one of {FAILURE_ACTIONS}, got {self.on_failure!r}")

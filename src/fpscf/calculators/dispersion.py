"""Analytic DFT-D3 dispersion added to a model's energy at inference, computed by simple-dftd3.

A model fit to dispersion-free labels (our water models: B3LYP/aug-cc-pVDZ) can carry a
dispersion choice, ``{"method": "d3bj", "functional": "b3lyp"}``, in its file header
(:func:`fpscf.model_io.write_dispersion`, ``fpscf dispersion``). The learnt part stays what it was
fit to; the calculator adds the D3 energy and its derivatives, so the model's potential energy
surface becomes B3LYP-D3(BJ). D3 does not depend on the applied field: dipole, charges,
polarizability, Born charges and Raman tensors are those of the learnt model alone.

Nothing here evaluates D3 itself: :class:`D3Dispersion` calls the reference implementation,
simple-dftd3 (the ``dftd3`` package), and LAMMPS runs its own ``pair_style dispersion/d3``
(:meth:`DispersionSettings.lammps_pair_style`). Both use the two-body D3 energy (no three-body
Axilrod-Teller-Muto term: the LAMMPS style has none, and simple-dftd3 leaves it out by default
when parameters are loaded by functional name) with hard real-space cutoffs (Å): ``cutoff`` for
pairs and ``cn_cutoff`` for the coordination numbers. With the same cutoffs the two agree to
about 1e-6 of the energy (measured: 5e-8 eV for the water dimer, 1.2e-6 eV on -1.14 eV for a
periodic 8-water box); what remains is LAMMPS' own Bohr radius and Hartree (0.52917725 Å,
27.21140795 eV) against CODATA 2018 here (:mod:`fpscf.units`).

Units: positions Å, energy eV, forces eV/Å, stress eV/Å³ (ASE sign and Voigt order), virial eV
(``W = −∂E/∂η = −stress·Ω``), Hessian eV/Å² (row and column index 3I + b).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from fpscf.units import BOHR, HARTREE

#: Damping functions: name in a model file -> name in ``pair_style dispersion/d3``.
DISPERSION_METHODS = {"d3bj": "bj", "d3zero": "zero"}
#: simple-dftd3's default real-space cutoffs, 60 and 40 Bohr, in Å.
DEFAULT_CUTOFF = 60.0 * BOHR
DEFAULT_CN_CUTOFF = 40.0 * BOHR

# Functionals ``pair_style dispersion/d3`` (LAMMPS 22 Jul 2025) knows, in its spelling, per damping;
# keyed by the name without '-' and in lower case (simple-dftd3 accepts either spelling). Each gives
# the energy of simple-dftd3 to 1e-7 relative on the water dimer (checked when this table was made;
# LAMMPS also lists mn15 and r2scan for bj but refuses them at run time).
_LAMMPS_FUNCTIONALS = {
    "bj": (
        "b-p b-lyp revpbe rpbe b97-d pbe rpw86-pbe b3-lyp tpss hf tpss0 pbe0 hse06 revpbe38 pw6b95 b2-plyp "
        "dsd-blyp dsd-blyp-fc bop mpwlyp o-lyp pbesol bpbe opbe ssb revssb otpss b3pw91 bh-lyp revpbe0 tpssh "
        "mpw1b95 pwb6k b1b95 bmk cam-b3lyp lc-wpbe b2gp-plyp ptpss pwpb95 hcth120 pw1pw pwgga hsesol hf3c "
        "hf3cv pbeh3c"
    ),
    "zero": (
        "slater-dirac-exchange b-lyp b-p b97-d revpbe pbe pbesol rpw86-pbe rpbe tpss b3-lyp pbe0 hse06 revpbe38 "
        "pw6b95 tpss0 b2-plyp pwpb95 b2gp-plyp ptpss hf mpwlyp bpbe bh-lyp tpssh pwb6k b1b95 bop o-lyp o-pbe ssb "
        "revssb otpss b3pw91 revpbe0 pbe38 mpw1b95 mpwb1k bmk cam-b3lyp lc-wpbe m05 m052x m06l m06 m062x m06hf "
        "hcth120"
    ),
}
_ALIASES = {"bp86": "bp"}  # simple-dftd3's bp86 is LAMMPS' b-p


def _key(functional: str) -> str:
    key = functional.lower().replace("-", "").replace("_", "")
    return _ALIASES.get(key, key)


def _dftd3() -> Any:
    """The simple-dftd3 Python API, or a clear error saying how to install it."""
    try:
        from dftd3 import interface
    except ImportError:
        raise ImportError(
            "dispersion needs simple-dftd3 (the 'dftd3' package): pip install dftd3 "
            "(or pip install 'fpscf[dispersion]'); or switch it off with FixedPointCalculator(dispersion=False)"
        ) from None
    return interface


def _damping_class(method: str) -> Any:
    interface = _dftd3()
    return {"d3bj": interface.RationalDampingParam, "d3zero": interface.ZeroDampingParam}[method]


@dataclass(frozen=True)
class DispersionSettings:
    """Which D3 term a model adds: damping ``method`` (``d3bj`` Becke-Johnson, ``d3zero``), the
    ``functional`` whose D3 parameters it takes (simple-dftd3 names, e.g. ``b3lyp``), and the
    real-space cutoffs in Å for pairs (``cutoff``) and coordination numbers (``cn_cutoff`` ≤
    ``cutoff``: LAMMPS counts coordination only over the pair neighbour list)."""

    method: str
    functional: str
    cutoff: float = DEFAULT_CUTOFF
    cn_cutoff: float = DEFAULT_CN_CUTOFF

    def __post_init__(self) -> None:
        if self.method not in DISPERSION_METHODS:
            raise ValueError(
                f"dispersion method {self.method!r} is not supported; choose one of {list(DISPERSION_METHODS)} "
                "(D3 with Becke-Johnson or zero damping)"
            )
        if not isinstance(self.functional, str) or not self.functional:
            raise ValueError(f"dispersion functional must be a name such as 'b3lyp', got {self.functional!r}")
        cutoff, cn_cutoff = float(self.cutoff), float(self.cn_cutoff)
        if not (0.0 < cn_cutoff <= cutoff and np.isfinite(cutoff)):
            raise ValueError(
                f"dispersion cutoffs must satisfy 0 < cn_cutoff <= cutoff (Å), got cutoff={self.cutoff!r}, "
                f"cn_cutoff={self.cn_cutoff!r} (defaults {DEFAULT_CUTOFF:.4f} and {DEFAULT_CN_CUTOFF:.4f})"
            )
        object.__setattr__(self, "cutoff", cutoff)
        object.__setattr__(self, "cn_cutoff", cn_cutoff)
        try:
            damping = _damping_class(self.method)
        except ImportError:
            return  # checked when the term is evaluated; a model file still loads without simple-dftd3
        try:
            damping(method=self.functional)
        except Exception:  # simple-dftd3 raises RuntimeError for an unknown functional
            raise ValueError(
                f"simple-dftd3 has no {self.method} parameters for the functional {self.functional!r}; use its "
                "name as in simple-dftd3 (e.g. 'b3lyp', 'pbe', 'pbe0', 'revpbe')"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a model header (all four keys)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DispersionSettings":
        """From ``{"method": ..., "functional": ..., ["cutoff": Å, "cn_cutoff": Å]}``."""
        if not isinstance(data, dict):
            raise ValueError(
                f"dispersion must be a dict such as {{'method': 'd3bj', 'functional': 'b3lyp'}}, got {data!r}"
            )
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"dispersion has unknown key {key!r}{hint}; valid keys: {names}")
        missing = [key for key in ("method", "functional") if key not in data]
        if missing:
            raise ValueError(
                f"dispersion needs {missing}, e.g. {{'method': 'd3bj', 'functional': 'b3lyp'}}; got {data!r}"
            )
        return cls(**data)

    def lammps_pair_style(self) -> str:
        """The ``pair_style dispersion/d3`` arguments that reproduce this term in LAMMPS (units metal),
        e.g. ``dispersion/d3 bj b3-lyp 31.7506 21.1671``."""
        damping = DISPERSION_METHODS[self.method]
        spellings = {_key(name): name for name in _LAMMPS_FUNCTIONALS[damping].split()}
        name = spellings.get(_key(self.functional))
        if name is None:
            raise ValueError(
                f"pair_style dispersion/d3 {damping} has no functional matching {self.functional!r}; "
                f"it knows: {' '.join(sorted(spellings.values()))}"
            )
        return f"dispersion/d3 {damping} {name} {self.cutoff:.10g} {self.cn_cutoff:.10g}"

    def describe(self) -> str:
        """One line for people: ``D3(BJ) with B3LYP parameters, cutoffs 31.75 Å (pairs), 21.17 Å (CN)``."""
        damping = {"d3bj": "D3(BJ)", "d3zero": "D3(0)"}[self.method]
        return (f"{damping} with {self.functional} parameters (two-body, simple-dftd3), cutoffs {self.cutoff:.2f} Å "
                f"(pairs), {self.cn_cutoff:.2f} Å (coordination numbers)")


def resolve_dispersion(choice: Any, model_choice: Any) -> DispersionSettings | None:
    """The dispersion a calculator or export uses: ``choice`` None -> the model's (``model_choice``,
    a :class:`DispersionSettings`, a dict or None), False -> none, a dict or DispersionSettings -> that."""
    if choice is None:
        choice = model_choice
    if choice is None or choice is False:
        return None
    if choice is True:
        raise ValueError("dispersion=True is ambiguous: pass None (the model's choice), False (off) or a dict "
                         "such as {'method': 'd3bj', 'functional': 'b3lyp'}")
    if isinstance(choice, DispersionSettings):
        return choice
    return DispersionSettings.from_dict(choice)


class D3Dispersion:
    """D3 energy and derivatives of ASE Atoms through simple-dftd3, for one :class:`DispersionSettings`.

    :meth:`compute` returns ``energy`` (eV), ``energies`` (N,) eV (simple-dftd3's pairwise energies,
    half of each pair to each atom; they sum to ``energy``), ``forces`` (N,3) eV/Å, ``virial`` (3,3)
    eV (``W = −∂E/∂η``), and for cells periodic in all three directions ``stress`` (6,) eV/Å³; with
    ``hessian=True`` also ``hessian`` (3N,3N) eV/Å², simple-dftd3's analytic second derivatives
    (version 1.7; they agree with central differences of its analytic forces to 3e-9 eV/Å² at a
    1e-4 Å step on the water dimer). Partly periodic cells are periodic along the periodic axes.
    """

    def __init__(self, settings: DispersionSettings) -> None:
        self.settings = settings
        self._param = _damping_class(settings.method)(method=settings.functional)
        self._model: Any = None
        self._key: tuple[Any, ...] | None = None

    def _prepare(self, atoms: Any) -> Any:
        numbers = np.asarray(atoms.numbers)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        positions = np.asarray(atoms.positions, dtype=float) / BOHR
        lattice = np.asarray(atoms.cell.array, dtype=float) / BOHR if pbc.any() else None
        key = (tuple(int(z) for z in numbers), tuple(bool(p) for p in pbc))
        if self._model is not None and self._key == key:
            self._model.update(positions, lattice)
            return self._model
        if pbc.any() and abs(np.linalg.det(atoms.cell.array)) < 1e-6:
            raise ValueError(f"dispersion: atoms.pbc is {pbc.tolist()} but the cell has no volume; set a cell")
        model = _dftd3().DispersionModel(numbers, positions, lattice, pbc if pbc.any() else None)
        model.set_realspace_cutoff(self.settings.cutoff / BOHR, self.settings.cutoff / BOHR,
                                   self.settings.cn_cutoff / BOHR)
        self._model, self._key = model, key
        return model

    def compute(self, atoms: Any, hessian: bool = False) -> dict[str, Any]:
        """D3 results for ``atoms`` (see the class docstring); ``hessian=True`` adds the Hessian."""
        model = self._prepare(atoms)
        result = model.get_dispersion(self._param, grad=True)
        pairwise = model.get_pairwise_dispersion(self._param)["additive pairwise energy"]
        virial = -np.asarray(result["virial"], dtype=float) * HARTREE  # simple-dftd3 gives ∂E/∂η (Hartree)
        out: dict[str, Any] = {
            "energy": float(result["energy"]) * HARTREE,
            "energies": np.asarray(pairwise, dtype=float).sum(axis=1) * HARTREE,
            "forces": -np.asarray(result["gradient"], dtype=float) * (HARTREE / BOHR),
            "virial": virial,
        }
        if bool(np.all(atoms.pbc)):
            stress = -virial / abs(np.linalg.det(atoms.cell.array))
            out["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]].copy()
        if hessian:
            n = 3 * len(atoms)
            out["hessian"] = np.asarray(model.get_hessian(self._param)["hessian"], dtype=float).reshape(n, n) * (
                HARTREE / BOHR**2)
        return out

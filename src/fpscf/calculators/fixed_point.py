"""ASE calculator running the fpscf SCF loop: ``atoms.calc = FixedPointCalculator(model=...)``."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from fpscf.data import atoms_to_graph
from fpscf.calculators.dispersion import D3Dispersion, resolve_dispersion
from fpscf.calculators.inputs import structure_charge, vector3
from fpscf.calculators.response import (
    dielectric_tensor,
    enforce_acoustic_sum_rule,
    evaluate_response,
    polarization_branch,
)
from fpscf.data.labels import KeyMap
from fpscf.domain import MAX_ENERGY_PER_ATOM, MAX_FORCE, shortest_distance
from fpscf.errors import InputError, InputTypeError, InputWarning, NonFiniteResultError, OutOfDomainWarning
from fpscf.models import resolve_model
from fpscf.scf.settings import SCFSettings

DTYPES = {"float64": torch.float64, "float32": torch.float32}
# Which derivative pass (fpscf.calculators.response) each ASE property needs.
RESPONSE_NEEDED = {
    "polarizability": "polarizability",
    "dielectric_tensor": "polarizability",
    "born_effective_charges": "born_effective_charges",
    "raman_tensors": "raman_tensors",
    "virials": "virials",
    "stresses": "virials",
    "hessian": "hessian",
    "magnetic_susceptibility": "magnetic_susceptibility",
    "magnetoelectric_tensor": "magnetoelectric_tensor",
}
MAGNETIC_PROPERTIES = (
    "magmom", "magmoms", "magnetic_moment", "magnetic_forces", "magnetic_susceptibility", "magnetoelectric_tensor",
)
# atoms.info keys that are inputs of the model (a change means a new calculation).
INFO_INPUTS = ("external_field", "total_charge", "charge", "magnetic_field", "fermi_level", "spin_on")
# atoms.arrays keys that are inputs of the model (ASE itself compares ``initial_magmoms``).
ARRAY_INPUTS = ("initial_noncollinear_magmoms",)
PERIODIC_ONLY = ("stress", "stresses", "dielectric_tensor", "polarization", "polarization_quantum")


class FixedPointCalculator(Calculator):
    """Energy (eV), forces (eV/Å), stress (eV/Å³, periodic), per-atom energies, dipole (e·Å),
    charges (e), atomic multipoles and Fermi level (V) from a converged fpscf SCF.

    ``dipole`` is ``D = −∂E/∂ε`` (docs/physics.md, Units and signs), exact through the fixed point;
    ``results['density_dipole']`` is ``Σ_i (q_i r_i + d_i)`` of the converged density (the two agree
    for a variational model).

    ``model`` is a :class:`~fpscf.model.FixedPointModel`, a model file, or the name of a shipped
    model (:mod:`fpscf.models`); without one the calculator loads the shipped default, the
    B3LYP/aug-cc-pVDZ water model ``"water-b3lyp"`` (model card: ``fpscf.models.model_card()``).

    ``atoms.info['external_field']`` (V/Å) and ``atoms.info['total_charge']`` (e) override the
    calculator's ``electric_field`` and ``total_charge`` per structure (``atoms.info['charge']``, ASE's
    and extxyz's key, is read as the total charge too; a total charge beyond ±ΣZ, a non-numeric
    field and other bad inputs raise :class:`~fpscf.errors.InputError`, see
    :mod:`fpscf.calculators.inputs`). The density of the last
    call is reused as the starting guess when the number and species of atoms are unchanged
    (MD, phonon displacements). ``results['scf_steps']`` reports the iterations used.

    Response properties (exact derivatives through the converged SCF, docs/physics.md, Units and signs; each is
    computed only when asked for, see :mod:`fpscf.calculators.response`):

    - ``polarizability`` α = −∂²E/∂ε∂ε (3,3) e·Å²/V; ``dielectric_tensor`` ε∞ = 1 + α/(ε0 Ω)
      (periodic cells only)
    - ``born_effective_charges`` Z*_{I,ab} = ∂F_{I,b}/∂ε_a (N,3,3) e. ``Σ_I Z*_I = Q·1`` holds to the
      solver tolerance; ``acoustic_sum_rule=True`` enforces it exactly by subtracting the residual
      sum evenly from every atom (and the same for the Raman tensors, whose sum over atoms is zero).
    - ``raman_tensors`` ∂α_ab/∂R_{I,c} (N,3,3,3) e·Å/V, indexed [I, c, a, b]
    - ``polarization`` D/Ω (3,) e/Å² on the branch nearest zero, with ``polarization_quantum``
      (3,3) e/Å², rows e·a_j/Ω (periodic cells only); ``dipole`` for molecules and cells alike
    - ``hessian`` ∂²E/∂R∂R = −∂F/∂R (3N,3N) eV/Å², index 3I + b (exact; symmetric to solver precision)
    - ``virials`` W_I = −∂E_I/∂η (N,3,3) eV, summing to the global virial −stress·Ω; ``stresses``
      −W_I/Ω in ASE's Voigt order (N,6) eV/Å³, summing to ``stress`` (periodic cells only)

    Models with magnetic moments (``magnetic_moments: collinear | noncollinear``) run a second
    self-consistent loop for the moments in the magnetic field B (T): ``magnetic_field=`` or
    ``atoms.info['magnetic_field']`` (an axial vector), starting from the initial moments
    (``atoms.set_initial_magnetic_moments``, (N,) collinear or (N,3), or
    ``atoms.arrays['initial_noncollinear_magmoms']``; default 1 μ_B along B) or, with
    ``fix_moments=True``, held at them (constrained moments). ``atoms.info['spin_on'] = False``
    marks a non-magnetic structure (moments zero). Properties:

    - ``magmoms`` (N,) collinear (along n̂ = B/|B|, ẑ without a field) or (N,3) μ_B; ``magmom`` their
      sum (a number for collinear, as in ASE, a vector for non-collinear moments)
    - ``magnetic_moment`` M = −(1/μ_B) ∂E/∂B (3,) μ_B (with the Zeeman energy −μ_B B·Σm)
    - ``magnetic_forces`` −∂E/∂m_i eV/μ_B (zero to the SCF tolerance for relaxed moments; the
      constraining field for fixed ones)
    - ``magnetic_susceptibility`` −∂²E/∂B∂B (3,3) eV/T² and ``magnetoelectric_tensor``
      −∂²E/∂ε_a∂B_b = ∂D_a/∂B_b (3,3) e·Å/T

    Ask for several at once with :meth:`get_properties` (or ``calculate(atoms, [...])``) to share
    one SCF and one set of derivative passes.

    Training domain (:mod:`fpscf.domain`): a model that records the ranges of its training data
    (``model.training_domain``; every model trained by ``fpscf train`` and the shipped ones) has
    each structure checked against them: a pair of atoms closer than 0.9 × the shortest of its
    element pair in training, a field above 1.5 × the largest, a total charge outside the training
    range, a converged atomic charge above 1.5 × the largest of its element, a periodic structure
    for a model of open ones (or the reverse) give an :class:`~fpscf.domain.OutOfDomainWarning`,
    once per calculator for each kind (each element pair, the field, ...). Results are still
    returned. A non-finite energy, force or other result, or an energy more than
    ``MAX_ENERGY_PER_ATOM`` (1e4 eV) per atom above the isolated-atom references, or a force
    component beyond ``MAX_FORCE`` (1e6 eV/Å), raises
    :class:`~fpscf.domain.NonFiniteResultError` and leaves ``results`` empty.

    Dispersion (:mod:`fpscf.calculators.dispersion`): a model whose file records a D3 term
    (``model.dispersion``, e.g. ``{"method": "d3bj", "functional": "b3lyp"}``; set with
    ``fpscf dispersion``) has it added, computed by simple-dftd3: ``dispersion=None`` (default) takes
    the model's choice, ``dispersion=False`` switches it off, a dict (or
    :class:`~fpscf.calculators.dispersion.DispersionSettings`) sets another. The D3 energy, forces,
    stress, Hessian and per-atom energies are added to ``energy``, ``free_energy``, ``forces``,
    ``stress``, ``hessian`` and ``energies``; ``results['dispersion_energy']`` holds the D3 energy
    (present only with dispersion on). The per-atom ``virials`` and ``stresses`` are those of the learnt
    model alone (simple-dftd3 gives no per-atom virial): with dispersion on they sum to the global
    virial without D3, ``−(stress − results['dispersion_stress'])·Ω``. D3 does not depend on the
    field: dipole, charges, polarizability, Born charges and Raman tensors are unchanged by it.

    Levels of theory (:mod:`fpscf.nn.levels`): a model trained on several (``num_levels`` > 1)
    answers at ``level`` (0 .. num_levels − 1, default 0): that level's energy head gives the energy
    and every derivative; the density and charges are shared.
    """

    implemented_properties = [
        "energy", "free_energy", "forces", "stress", "energies", "dipole", "charges",
        "atomic_multipoles", "fermi_level", "polarizability", "dielectric_tensor", "polarization",
        "polarization_quantum", "born_effective_charges", "raman_tensors", "virials", "stresses",
        "hessian", *MAGNETIC_PROPERTIES,
    ]
    default_parameters: dict[str, Any] = {}

    def __init__(
        self,
        model: Any = None,
        device: str = "cpu",
        default_dtype: str = "float64",
        electric_field: Any = None,
        magnetic_field: Any = None,
        fix_moments: bool = False,
        total_charge: float | None = None,
        constant_charge: bool = True,
        fermi_level: float | None = None,
        scf_tolerance: float = 1e-6,
        max_scf_steps: int = 200,
        mixing: str = "anderson",
        mixing_parameter: float = 0.5,
        on_scf_failure: str = "raise",
        acoustic_sum_rule: bool = False,
        dispersion: Any = None,
        verbose: bool = False,
        level: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if default_dtype not in DTYPES:
            raise InputError(f"default_dtype must be one of {list(DTYPES)}, got {default_dtype!r}")
        self.dtype = DTYPES[default_dtype]
        self.device = torch.device(device)
        self.model = resolve_model(model).to(device=self.device, dtype=self.dtype)
        self.model.eval()
        self.electric_field = np.zeros(3) if electric_field is None else vector3(electric_field, "electric_field", "V/Å")
        self.magnetic_field = np.zeros(3) if magnetic_field is None else vector3(magnetic_field, "magnetic_field", "T")
        if not isinstance(fix_moments, bool):
            raise InputError(f"fix_moments must be True or False, got {fix_moments!r}")
        self.fix_moments = fix_moments
        self.total_charge = total_charge
        self.constant_charge = constant_charge
        self.fixed_fermi_level = fermi_level
        self.settings = SCFSettings(
            scf_tolerance=scf_tolerance,
            max_scf_steps=max_scf_steps,
            mixing=mixing,
            mixing_parameter=mixing_parameter,
            on_failure=on_scf_failure,
            verbose=verbose,
        )
        if not isinstance(acoustic_sum_rule, bool):
            raise InputTypeError(f"acoustic_sum_rule must be True or False, got {acoustic_sum_rule!r}")
        self.acoustic_sum_rule = acoustic_sum_rule
        #: the D3 term added to the learnt model's results (None: none); see the class docstring
        self.dispersion = resolve_dispersion(dispersion, getattr(self.model, "dispersion", None))
        self._dispersion = D3Dispersion(self.dispersion) if self.dispersion is not None else None
        levels = int(self.model.config.num_levels)
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < levels:
            raise InputError(f"level must be an integer in 0..{levels - 1} (this model has {levels} level"
                             f"{'s' if levels > 1 else ''} of theory), got {level!r}")
        self.level = level
        self._warm: tuple[tuple[int, ...], torch.Tensor, torch.Tensor] | None = None
        self._domain_warned: set[str] = set()  # kinds of domain violation (and input warnings) already given

    def check_state(self, atoms: Any, tol: float = 1e-15) -> list[str]:
        """ASE's comparison plus the inputs read from ``atoms.info`` (applied fields, total charge,
        Fermi level): changing the field on the same geometry must not return stale results."""
        changes = list(super().check_state(atoms, tol))
        if self.atoms is not None and "info" not in changes:
            old, new = self.atoms.info, atoms.info
            for key in INFO_INPUTS:
                a, b = old.get(key), new.get(key)
                if (a is None) != (b is None) or (a is not None and not np.array_equal(np.asarray(a), np.asarray(b))):
                    changes.append("info")
                    break
        if self.atoms is not None and "arrays" not in changes:
            for key in ARRAY_INPUTS:
                a, b = self.atoms.arrays.get(key), atoms.arrays.get(key)
                if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
                    changes.append("arrays")
                    break
        return changes

    def get_properties(self, names: list[str], atoms: Any = None) -> dict[str, Any]:
        """Several properties from one SCF and one set of derivative passes, e.g.
        ``calc.get_properties(["polarizability", "born_effective_charges", "raman_tensors"], atoms)``."""
        for name in names:
            if name not in self.implemented_properties:
                raise InputError(f"unknown property {name!r}; available: {self.implemented_properties}")
        atoms = atoms if atoms is not None else self.atoms
        if atoms is None:
            raise InputError("get_properties needs atoms (none were given and none are attached)")
        changes = self.check_state(atoms)
        if changes:
            self.reset()
        missing = [name for name in names if name not in self.results]
        if missing:
            self.calculate(atoms, missing, changes)
        return {name: self.results[name] for name in names}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:  # noqa: ANN001
        previous = {} if system_changes else dict(self.results)
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic = bool(atoms.pbc.all())
        for name in properties:
            if name in PERIODIC_ONLY and not periodic:
                raise InputError(
                    f"{name!r} is defined for periodic cells only (atoms.pbc is {atoms.pbc.tolist()}); "
                    "for a molecule use 'dipole', 'polarizability' or 'virials'"
                )
        magnetic = getattr(self.model, "magnetic", None) is not None
        for name in properties:
            if name in MAGNETIC_PROPERTIES and not magnetic:
                raise InputError(
                    f"{name!r} needs a model with magnetic moments (magnetic_moments: collinear or noncollinear); "
                    "this model has none"
                )
        info = self._inputs(atoms)
        probe = atoms.copy()
        probe.calc = None
        probe.info = info
        try:
            graph = atoms_to_graph(
                probe, self.model.config.r_max, key_map=KeyMap.inputs_only(), species=self.model.atomic_numbers
            ).to(device=self.device, dtype=self.dtype)
        except (TypeError, ValueError) as error:  # the structure's own checks (elements, positions, cell)
            raise InputError(f"FixedPointCalculator: {str(error).replace('structure 0', 'the structure', 1)}") from None
        if self.level:  # the level of theory whose head answers (fpscf.nn.levels)
            graph.labels["level"] = torch.tensor([self.level], device=self.device)
            graph.label_masks["level"] = torch.tensor([True], device=self.device)
        domain = getattr(self.model, "training_domain", None)  # checked once the model accepts the structure
        if domain is not None:
            charge = float(info.get("total_charge", 0.0)) if self.constant_charge else None  # floats at fixed μ
            self._warn_out_of_domain(atoms, domain.violations(atoms, info["external_field"], charge))
        key = tuple(int(z) for z in atoms.numbers)
        initial_p = initial_mu = None
        if self._warm is not None and self._warm[0] == key:
            initial_p, initial_mu = self._warm[1], self._warm[2]
        fermi = None
        if not self.constant_charge:
            value = info.get("fermi_level", self.fixed_fermi_level if self.fixed_fermi_level is not None else 0.0)
            try:
                fermi = torch.tensor([float(value)], dtype=self.dtype, device=self.device)
            except (TypeError, ValueError):
                raise InputError(f"fermi_level must be one number (V), got {value!r}") from None
        needed = {RESPONSE_NEEDED[name] for name in properties if name in RESPONSE_NEEDED}
        out = evaluate_response(
            self.model,
            graph,
            needed,
            constant_charge=self.constant_charge,
            fermi_level=fermi,
            initial_multipoles=initial_p,
            initial_fermi_level=initial_mu,
            settings=self.settings,
            **({"fix_moments": self.fix_moments} if magnetic else {}),
        )
        self.results = {}
        results = self._results(out, graph, atoms, periodic)
        if self._dispersion is not None:
            self._add_dispersion(results, atoms, periodic)
        self._check_finite(results, atoms, info)
        if domain is not None:
            self._warn_out_of_domain(atoms, domain.charge_violations(atoms.numbers, results["charges"]))
        self._warm = (key, out["multipoles"].detach(), out["fermi_level"].detach())
        self.results = {**previous, **results}

    def _inputs(self, atoms: Any) -> dict[str, Any]:
        """``atoms.info`` with the calculator's field and total charge filled in, each checked
        (:mod:`fpscf.calculators.inputs`); fractional or ignored charges warn once per calculator."""
        info = dict(atoms.info)
        for key, default, unit in (("external_field", self.electric_field, "V/Å"),
                                   ("magnetic_field", self.magnetic_field, "T")):
            value = info.get(key)
            info[key] = (default if value is None else vector3(value, f"atoms.info[{key!r}]", unit)).tolist()
        charge, source = structure_charge(info, self.total_charge, atoms.numbers)
        info.pop("charge", None)
        if charge is not None:
            info["total_charge"] = charge
            if charge != round(charge):
                self._warn_input("fractional_charge", f"{source} = {charge:g} e is not a whole number; the model "
                                 "spreads it over the structure. For an ion give an integer (e.g. 1 for a cation)")
        elif "initial_charges" in atoms.arrays and abs(float(np.sum(atoms.arrays["initial_charges"]))) > 1e-8:
            total = float(np.sum(atoms.arrays["initial_charges"]))
            self._warn_input("initial_charges", f"atoms' initial charges (sum {total:g} e) are ignored: the model "
                             f"computes its own charges of a neutral structure; for an ion set "
                             f"atoms.info['total_charge'] = {total:g}")
        return info

    def _warn_input(self, kind: str, message: str) -> None:
        """One :class:`InputWarning` per ``kind`` for the life of this calculator."""
        if kind not in self._domain_warned:
            self._domain_warned.add(kind)
            warnings.warn(f"{message} (warned once per calculator)", InputWarning, stacklevel=4)

    def _add_dispersion(self, results: dict[str, Any], atoms: Any, periodic: bool) -> None:
        """Add the D3 energy and its derivatives (simple-dftd3) to ``results``; response properties
        (dipole, charges, α, Z*, Raman) are left alone: D3 does not depend on the field."""
        d3 = self._dispersion.compute(atoms, hessian="hessian" in results)
        results["dispersion_energy"] = d3["energy"]
        results["dispersion_forces"] = d3["forces"]
        for name in ("energy", "free_energy"):
            results[name] = results[name] + d3["energy"]
        results["forces"] = results["forces"] + d3["forces"]
        results["energies"] = results["energies"] + d3["energies"]
        results["virial"] = results["virial"] + d3["virial"]
        if periodic:
            results["dispersion_stress"] = d3["stress"]
            results["stress"] = results["stress"] + d3["stress"]
        if "hessian" in results:
            results["hessian"] = results["hessian"] + d3["hessian"]

    def _warn_out_of_domain(self, atoms: Any, violations: list[Any]) -> None:
        """One :class:`OutOfDomainWarning` per kind of violation for the life of this calculator."""
        for violation in violations:
            if violation.kind in self._domain_warned:
                continue
            self._domain_warned.add(violation.kind)
            warnings.warn(
                f"{atoms.get_chemical_formula()} is outside the training domain of the model: {violation.message}. "
                f"Results here are extrapolation; {_DOMAIN_ADVICE.get(violation.kind.split(':')[0], _DOMAIN_ADVICE[''])} "
                "(warned once per calculator for this kind)",
                OutOfDomainWarning,
                stacklevel=2,
            )

    def _check_finite(self, results: dict[str, Any], atoms: Any, info: dict[str, Any]) -> None:
        """Raise :class:`NonFiniteResultError` for a non-finite result, an absurd energy or an absurd force."""
        bad = None
        for name in ("energy", "forces", *sorted(results)):
            value = results.get(name)
            if isinstance(value, (float, np.ndarray)) and not np.all(np.isfinite(value)):
                bad = f"the {name} is not finite ({_first_bad(value)})"
                break
        if bad is None:
            index = {int(z): k for k, z in enumerate(self.model.atomic_numbers)}
            references = self.model.atomic_energies.detach().cpu().double().numpy()
            reference = float(sum(references[index[int(z)]] for z in atoms.numbers))
            per_atom = (results["energy"] - reference) / max(len(atoms), 1)
            if abs(per_atom) > MAX_ENERGY_PER_ATOM:
                bad = (f"the energy is {per_atom:.3g} eV per atom above the isolated-atom references (sane: within "
                       f"±{MAX_ENERGY_PER_ATOM:g} eV/atom)")
        if bad is None:
            worst = float(np.abs(results["forces"]).max()) if len(atoms) else 0.0
            if worst > MAX_FORCE:
                bad = f"a force component is {worst:.3g} eV/Å (sane: within ±{MAX_FORCE:g} eV/Å)"
        if bad is None:
            return
        closest = shortest_distance(atoms, max(float(self.model.config.r_max), 1.0))
        where = (f"shortest interatomic distance {closest[0]:.3f} Å ({closest[1]})" if closest is not None
                 else "no two atoms within the cutoff")
        strength = float(np.linalg.norm(np.asarray(info["external_field"], dtype=float)))
        raise NonFiniteResultError(
            f"FixedPointCalculator: {bad} for {atoms.get_chemical_formula()} ({len(atoms)} atoms, {where}, field "
            f"{strength:.3g} V/Å); likely atoms too close, a field too large, or a structure outside the model's "
            "training domain: check the structure (and the MD time step)"
        )

    def _results(self, out: dict[str, Any], graph: Any, atoms: Any, periodic: bool) -> dict[str, Any]:
        to_np = lambda t: t.detach().cpu().numpy()  # noqa: E731
        energy = float(out["energy"][0].detach())
        results: dict[str, Any] = {
            "energy": energy,
            "free_energy": energy,
            "forces": to_np(out["forces"]),
            "energies": to_np(out["node_energy"]),
            "dipole": to_np(out["dipole"][0]),
            "density_dipole": to_np(out["density_dipole"][0]),
            "charges": to_np(out["charges"]),
            "atomic_multipoles": to_np(out["multipoles"]),
            "fermi_level": float(out["fermi_level"][0].detach()),
            "scf_steps": int(out["scf_steps"]),
            "virial": to_np(out["virial"][0]),
        }
        volume = float(abs(np.linalg.det(atoms.cell.array))) if periodic else None
        if periodic:
            results["stress"] = full_3x3_to_voigt_6_stress(to_np(out["stress"][0]))
            polarization, quantum = polarization_branch(out["dipole"][0].detach(), graph.cell[0])
            results["polarization"] = to_np(polarization)
            results["polarization_quantum"] = to_np(quantum)
        if "polarizability" in out:
            alpha = out["polarizability"][0].detach()
            results["polarizability"] = to_np(alpha)
            if periodic:
                results["dielectric_tensor"] = to_np(dielectric_tensor(alpha[None], graph.cell.new_tensor([volume]))[0])
        if "born_effective_charges" in out:
            born = out["born_effective_charges"].detach()
            if self.acoustic_sum_rule:
                born = enforce_acoustic_sum_rule(born, graph.batch, graph.total_charge)
            results["born_effective_charges"] = to_np(born)
        if "raman_tensors" in out:
            raman = out["raman_tensors"].detach()
            if self.acoustic_sum_rule:
                raman = raman - raman.mean(dim=0, keepdim=True)
            results["raman_tensors"] = to_np(raman)
        if "magmoms" in out:
            magmoms = to_np(out["magmoms"])
            results["magmoms"] = magmoms
            results["magmom"] = float(magmoms.sum()) if magmoms.ndim == 1 else magmoms.sum(axis=0)
            results["magnetic_moment"] = to_np(out["magnetic_moment"][0])
            results["magnetic_forces"] = to_np(out["magnetic_forces"])
            results["moment_scf_steps"] = int(out["moment_scf_steps"])
        for name in ("magnetic_susceptibility", "magnetoelectric_tensor"):
            if name in out:
                results[name] = to_np(out[name][0])
        if "hessian" in out:
            results["hessian"] = to_np(out["hessian"])
        if "virials" in out:
            virials = to_np(out["virials"])
            results["virials"] = virials
            if periodic:
                results["stresses"] = full_3x3_to_voigt_6_stress(-virials / volume)
        return results


# What to do, per kind of domain violation (the part of DomainViolation.kind before ':').
_DOMAIN_ADVICE = {
    "distance": "check the structure for overlapping atoms or a too long MD time step, or add such close contacts to "
                "the training data",
    "field": "use a weaker field or train on structures in fields this strong",
    "total_charge": "train on structures with this total charge",
    "charge": "the density is running away (a close contact or a strong field?); check the structure",
    "boundary": "train on structures with these boundary conditions",
    "element": "train on structures with this element",
    "": "add such structures to the training data",
}


def _first_bad(value: Any) -> str:
    """The first non-finite entry of a number or array, as text (``nan``, ``inf``, ``-inf``)."""
    flat = np.atleast_1d(np.asarray(value, dtype=float)).reshape(-1)
    return str(flat[~np.isfinite(flat)][0])

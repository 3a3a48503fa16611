"""ASE calculator running the fpscf SCF loop: ``atoms.calc = FixedPointCalculator(model=...)``."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from fpscf.data import atoms_to_graph
from fpscf.data.labels import KeyMap
from fpscf.scf.settings import SCFSettings

DTYPES = {"float64": torch.float64, "float32": torch.float32}


class FixedPointCalculator(Calculator):
    """Energy (eV), forces (eV/Å), stress (eV/Å³, periodic), per-atom energies, dipole (e·Å),
    charges (e), atomic multipoles and Fermi level (V) from a converged fpscf SCF.

    ``dipole`` is ``D = −∂E/∂ε`` (DESIGN.md section 1), exact through the fixed point;
    ``results['density_dipole']`` is ``Σ_i (q_i r_i + d_i)`` of the converged density (the two agree
    for a variational model).

    ``atoms.info['external_field']`` (V/Å) and ``atoms.info['total_charge']`` (e) override the
    calculator's ``electric_field`` and ``total_charge`` per structure. The density of the last
    call is reused as the starting guess when the number and species of atoms are unchanged
    (MD, phonon displacements). ``results['scf_steps']`` reports the iterations used.
    """

    implemented_properties = [
        "energy", "free_energy", "forces", "stress", "energies", "dipole", "charges",
        "atomic_multipoles", "fermi_level",
    ]
    default_parameters: dict[str, Any] = {}

    def __init__(
        self,
        model: Any = None,
        device: str = "cpu",
        default_dtype: str = "float64",
        electric_field: Any = None,
        total_charge: float | None = None,
        constant_charge: bool = True,
        fermi_level: float | None = None,
        scf_tolerance: float = 1e-6,
        max_scf_steps: int = 200,
        mixing: str = "anderson",
        mixing_parameter: float = 0.5,
        on_scf_failure: str = "raise",
        verbose: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if default_dtype not in DTYPES:
            raise ValueError(f"default_dtype must be one of {list(DTYPES)}, got {default_dtype!r}")
        self.dtype = DTYPES[default_dtype]
        self.device = torch.device(device)
        self.model = self._load(model).to(device=self.device, dtype=self.dtype)
        self.model.eval()
        self.electric_field = np.zeros(3) if electric_field is None else np.asarray(electric_field, float)
        if self.electric_field.shape != (3,):
            raise ValueError(f"electric_field must be 3 numbers (V/Å), got {electric_field!r}")
        self.total_charge = total_charge
        self.constant_charge = constant_charge
        self.fixed_fermi_level = fermi_level
        self.settings = SCFSettings(
            tolerance=scf_tolerance,
            max_steps=max_scf_steps,
            mixing=mixing,
            mixing_parameter=mixing_parameter,
            on_failure=on_scf_failure,
            verbose=verbose,
        )
        self._warm: tuple[tuple[int, ...], torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def _load(model: Any) -> Any:
        from fpscf.model import FixedPointModel
        from fpscf.model_io import load_model

        if isinstance(model, FixedPointModel):
            return model
        if isinstance(model, (str, os.PathLike)):
            return load_model(model)
        if model is None:
            raise ValueError("FixedPointCalculator needs model=<FixedPointModel or path to a model file>")
        raise TypeError(f"model must be a FixedPointModel or a path, got {type(model).__name__}")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:  # noqa: ANN001
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        info = dict(atoms.info)
        info.setdefault("external_field", self.electric_field.tolist())
        if self.total_charge is not None:
            info.setdefault("total_charge", float(self.total_charge))
        probe = atoms.copy()
        probe.calc = None
        probe.info = info
        graph = atoms_to_graph(
            probe, self.model.config.r_max, key_map=KeyMap.inputs_only(), species=self.model.atomic_numbers
        ).to(device=self.device, dtype=self.dtype)
        periodic = bool(atoms.pbc.any())
        key = tuple(int(z) for z in atoms.numbers)
        initial_p = initial_mu = None
        if self._warm is not None and self._warm[0] == key:
            initial_p, initial_mu = self._warm[1], self._warm[2]
        fermi = None
        if not self.constant_charge:
            value = info.get("fermi_level", self.fixed_fermi_level if self.fixed_fermi_level is not None else 0.0)
            fermi = torch.tensor([float(value)], dtype=self.dtype, device=self.device)
        out = self.model(
            graph,
            constant_charge=self.constant_charge,
            fermi_level=fermi,
            initial_multipoles=initial_p,
            initial_fermi_level=initial_mu,
            settings=self.settings,
            compute_forces=True,
            compute_stress=periodic and bool(atoms.pbc.all()),
            compute_dipole=True,
        )
        self._warm = (key, out["multipoles"].detach(), out["fermi_level"].detach())
        to_np = lambda t: t.detach().cpu().numpy()  # noqa: E731
        energy = float(out["energy"][0].detach())
        self.results = {
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
        }
        if "stress" in out:
            from ase.stress import full_3x3_to_voigt_6_stress

            self.results["stress"] = full_3x3_to_voigt_6_stress(to_np(out["stress"][0]))

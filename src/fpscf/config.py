"""Model hyperparameters: names users know from training options, validated with clear errors."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from fpscf.nn.repulsion import REPULSION_TYPES
from fpscf.scf.readouts import READOUT_TYPES
from fpscf.scf.updates import EMBEDDING_TYPES, NONLINEARITY_TYPES, UPDATE_TYPES

PBC_METHODS = ("realspace", "pbc", "slab", "auto")
#: Magnetic channel: no moments, collinear scalar moments (0e) or non-collinear axial vectors (1e).
MAGNETIC_MOMENT_TYPES = ("none", "collinear", "noncollinear")
#: How a periodic structure's charges couple to a uniform field (fpscf/electrostatics/applied_field.py).
FIELD_COUPLINGS = ("positions", "bond_midpoints")


def _default_update() -> dict[str, str]:
    return {
        "type": "OneBodyVariableUpdate",
        "potential_embedding_cls": "BiasedLinearPotentialEmbedding",
        "nonlinearity_cls": "NoNonLinearity",
    }


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`~fpscf.model.FixedPointModel` (fixed across training stages).

    Lengths in Å. ``atomic_numbers``: species the model knows. See the README for each option.
    """

    atomic_numbers: tuple[int, ...]
    r_max: float = 5.0
    num_channels: int = 16
    max_L: int = 1
    num_interactions: int = 2
    num_bessel: int = 8
    correlation: int = 2
    sh_max_l: int = 2
    radial_mlp_hidden: int = 32
    avg_num_neighbors: float = 8.0
    atomic_multipoles_max_l: int = 1
    atomic_multipoles_smearing_width: float = 1.0
    kspace_cutoff_factor: float = 7.0
    electrostatic_pbc_method: str = "auto"
    electrostatics_backend: str = "torch"
    ewald_split_width: Any = None
    kspace_method: str = "auto"
    include_electrostatic_self_interaction: bool = False
    field_feature_max_l: int = 1
    field_feature_widths: tuple[float, ...] = (1.0, 2.0)
    field_feature_norms: Any = None
    include_field_si: bool = False
    fixedpoint_update_config: dict = field(default_factory=_default_update)
    use_linear_local_charges: bool = False
    atom_density_scaling: Any = None
    field_readout_config: dict = field(default_factory=lambda: {"type": "StrictQuadraticFieldEnergyReadout"})
    field_coupling: str = "positions"
    field_coupling_bond_range: Any = None
    atomic_energies: Any = None
    magnetic_moments: str = "none"
    spin_on_embedding: bool = False
    short_range_repulsion: str = "zbl"
    radial_core_radius: float = 0.6
    repulsion_cutoff_factor: float = 1.0
    minimum_hardness: Any = "auto"
    local_multipole_bound: Any = 4.0
    num_levels: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.num_levels, bool) or not isinstance(self.num_levels, int) or self.num_levels < 1:
            raise ValueError(f"num_levels must be an integer >= 1 (levels of theory, fpscf.nn.levels), got {self.num_levels!r}")
        if len(self.atomic_numbers) == 0:
            raise ValueError("atomic_numbers must list at least one element (e.g. [1, 8] for water)")
        if len(set(self.atomic_numbers)) != len(self.atomic_numbers):
            raise ValueError(f"atomic_numbers has duplicates: {list(self.atomic_numbers)}")
        if self.electrostatic_pbc_method not in PBC_METHODS:
            raise ValueError(
                f"electrostatic_pbc_method={self.electrostatic_pbc_method!r} is not valid; choose one of {PBC_METHODS}"
            )
        if self.magnetic_moments not in MAGNETIC_MOMENT_TYPES:
            raise ValueError(
                f"magnetic_moments={self.magnetic_moments!r} is not valid; choose one of {MAGNETIC_MOMENT_TYPES}"
            )
        _check_choice("fixedpoint_update_config", self.fixedpoint_update_config, {
            "type": UPDATE_TYPES, "potential_embedding_cls": EMBEDDING_TYPES, "nonlinearity_cls": NONLINEARITY_TYPES,
        })
        _check_choice("field_readout_config", self.field_readout_config, {"type": READOUT_TYPES})
        self._check_field_coupling()
        self._check_short_range()
        n_norms = len(self.field_feature_widths) * (self.field_feature_max_l + 1)
        norms = self.field_feature_norms
        if not (norms is None or norms == "average" or (isinstance(norms, (list, tuple)) and len(norms) == n_norms)):
            raise ValueError(
                f"field_feature_norms must be None, 'average' or a list of len(field_feature_widths)·"
                f"(field_feature_max_l+1) = {n_norms} positive numbers, got {norms!r}"
            )
        if isinstance(norms, (list, tuple)) and any(not float(v) > 0 for v in norms):
            raise ValueError(f"field_feature_norms must be positive, got {norms!r}")
        scaling = self.atom_density_scaling
        if not (scaling is None or scaling == "average" or isinstance(scaling, dict)):
            raise ValueError(f"atom_density_scaling must be None, 'average' or a dict {{Z: scale}}, got {scaling!r}")
        if isinstance(scaling, dict):
            unknown = sorted(set(int(k) for k in scaling) - set(self.atomic_numbers))
            missing = sorted(set(self.atomic_numbers) - set(int(k) for k in scaling))
            if unknown or missing:
                raise ValueError(
                    f"atom_density_scaling keys must be exactly the model's atomic numbers {list(self.atomic_numbers)}; "
                    f"unknown {unknown}, missing {missing}"
                )

    def _check_field_coupling(self) -> None:
        if self.field_coupling not in FIELD_COUPLINGS:
            raise ValueError(f"field_coupling={self.field_coupling!r} is not valid; choose one of {FIELD_COUPLINGS}")
        bond_range = self.field_coupling_bond_range
        if self.field_coupling == "positions":
            if bond_range is not None:
                raise ValueError("field_coupling_bond_range is only used with field_coupling: bond_midpoints; remove it")
            return
        if not (isinstance(bond_range, (list, tuple)) and len(bond_range) == 2):
            raise ValueError(
                "field_coupling: bond_midpoints needs field_coupling_bond_range: [r_on, r_off] (Å): bonds shorter "
                "than r_on count fully, longer than r_off not at all, e.g. [2.9, 3.4] for AlAs (bond 2.42 Å, "
                f"next neighbours 3.96 Å); got {bond_range!r}"
            )
        r_on, r_off = (float(v) for v in bond_range)
        if not 0.0 < r_on < r_off <= self.r_max:
            raise ValueError(f"field_coupling_bond_range [r_on, r_off] needs 0 < r_on < r_off <= r_max = {self.r_max} Å, got {list(bond_range)}")

    def _check_short_range(self) -> None:
        if self.short_range_repulsion not in REPULSION_TYPES:
            raise ValueError(
                f"short_range_repulsion={self.short_range_repulsion!r} is not valid; choose one of {REPULSION_TYPES}"
            )
        if self.short_range_repulsion != "none":
            from ase.data import covalent_radii

            factor = float(self.repulsion_cutoff_factor)
            largest = factor * 2 * max(float(covalent_radii[z]) for z in self.atomic_numbers)
            if not 0 < factor or largest > self.r_max:
                raise ValueError(
                    f"repulsion_cutoff_factor={self.repulsion_cutoff_factor!r} switches the repulsion off at up to "
                    f"{largest:.2f} Å, beyond r_max = {self.r_max} Å; use a factor in (0, {factor * self.r_max / largest:.2f}]"
                )
        bound = self.local_multipole_bound
        if bound is not None and not (isinstance(bound, (int, float)) and bound > 0):
            raise ValueError(
                f"local_multipole_bound must be None (unbounded) or a positive number (multiples of the element's "
                f"density scale, e.g. 4.0), got {bound!r}"
            )
        hardness = self.minimum_hardness
        n_response = min(self.atomic_multipoles_max_l, self.field_feature_max_l) + 1
        if hardness is not None and hardness != "auto" and not (
            isinstance(hardness, (list, tuple)) and len(hardness) == n_response and all(float(v) > 0 for v in hardness)
        ):
            raise ValueError(
                f"minimum_hardness must be 'auto', None (unbounded response) or {n_response} positive numbers, one per "
                f"responding multipole order l = 0..{n_response - 1} (eV/e², eV/(e·Å)², ...), got {hardness!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-serialisable)."""
        data = asdict(self)
        data["atomic_numbers"] = list(self.atomic_numbers)
        data["field_feature_widths"] = list(self.field_feature_widths)
        if self.field_coupling_bond_range is not None:
            data["field_coupling_bond_range"] = [float(v) for v in self.field_coupling_bond_range]
        if isinstance(self.atom_density_scaling, dict):
            data["atom_density_scaling"] = {str(k): float(v) for k, v in self.atom_density_scaling.items()}
        if isinstance(self.atomic_energies, dict):
            data["atomic_energies"] = {str(k): float(v) for k, v in self.atomic_energies.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        data = dict(data)
        for key in ("atom_density_scaling", "atomic_energies"):
            if isinstance(data.get(key), dict):
                data[key] = {int(k): float(v) for k, v in data[key].items()}
        data["atomic_numbers"] = tuple(int(z) for z in data["atomic_numbers"])
        data["field_feature_widths"] = tuple(float(w) for w in data["field_feature_widths"])
        if data.get("field_coupling_bond_range") is not None:
            data["field_coupling_bond_range"] = tuple(float(v) for v in data["field_coupling_bond_range"])
        # Files written before the short-range repulsion existed were trained without it.
        data.setdefault("short_range_repulsion", "none")
        data.setdefault("radial_core_radius", 0.0)
        data.setdefault("minimum_hardness", None)
        data.setdefault("local_multipole_bound", None)
        if data.get("minimum_hardness") not in (None, "auto"):
            data["minimum_hardness"] = tuple(float(v) for v in data["minimum_hardness"])
        return cls(**data)


def hyperparameter_names() -> list[str]:
    """Valid hyperparameter names of :func:`fpscf.build_model`."""
    return [f.name for f in fields(ModelConfig) if f.name != "atomic_numbers"]


def make_config(atomic_numbers: Any, **hyperparameters: Any) -> ModelConfig:
    """Build a :class:`ModelConfig`, rejecting unknown names with the valid ones listed."""
    valid = hyperparameter_names()
    for name in hyperparameters:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(f"unknown hyperparameter {name!r}.{hint} Valid names: {', '.join(valid)}")
    numbers = []
    from ase.data import atomic_numbers as symbol_to_z

    for z in atomic_numbers:
        if isinstance(z, str):
            if z not in symbol_to_z:
                raise ValueError(f"unknown element symbol {z!r} in atomic_numbers")
            z = symbol_to_z[z]
        numbers.append(int(z))
    if "field_feature_widths" in hyperparameters:
        hyperparameters["field_feature_widths"] = tuple(float(w) for w in hyperparameters["field_feature_widths"])
    return ModelConfig(atomic_numbers=tuple(numbers), **hyperparameters)


def _check_choice(name: str, config: dict, choices: dict[str, tuple[str, ...]]) -> None:
    if not isinstance(config, dict):
        raise ValueError(f"{name} must be a dict with keys {list(choices)}, got {config!r}")
    for key in config:
        if key not in choices:
            raise ValueError(f"{name} has unknown key {key!r}; valid keys: {list(choices)}")
    for key, valid in choices.items():
        value = config.get(key, valid[0])
        if value not in valid:
            raise ValueError(f"{name}['{key}'] = {value!r} is not valid; choose one of {list(valid)}")

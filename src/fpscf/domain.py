"""The training domain of a model: the ranges of its training data, and checks against them.

A model is trusted where its training data were (docs/contributing.md, Principles). :class:`TrainingDomain`
records, as plain JSON-serialisable data stored in the model file header:

- ``elements``: the element symbols of the training structures (by atomic number);
- ``min_distances``: per element pair ``"H-O"`` (lighter element first) the shortest interatomic
  distance seen, Å (periodic cells: every periodic image counts, i.e. minimum-image and closer
  self-images); ``None`` where the pair never came closer than ``distance_cutoff``;
- ``max_field``: the largest |applied field| of a structure, V/Å; ``response_labels``: whether some
  structures carry polarizability or Born-charge labels (the field derivative at their field);
- ``total_charge_range``: (smallest, largest) total charge, e;
- ``max_atomic_charges``: per element the largest |atomic charge| of the labels (``charges``,
  else the l = 0 column of ``atomic_multipoles``), e; empty without charge labels;
- ``periodic`` / ``open``: whether periodic (any direction) / fully open structures were seen;
- ``num_structures``.

Checks (:meth:`TrainingDomain.violations`, :meth:`TrainingDomain.charge_violations`) report
what lies beyond these ranges by more than a tolerance:

- a pair closer than ``DISTANCE_TOLERANCE`` (0.9) × its training minimum. Thermal motion at the
  temperatures of typical training sets stretches and compresses bonds by a few per cent, so a
  contact 10 % shorter than any in the data is a new kind of contact, not a fluctuation; this is
  where learnt potentials without a repulsive prior turn attractive (docs/contributing.md, Principles).
- a field above ``FIELD_TOLERANCE`` (1.5) × the largest in training; with polarizability or
  Born-charge labels the model has learnt the linear response, and fields up to
  ``RESPONSE_FIELD_ALLOWANCE`` (0.05 V/Å) count as inside even for data at zero field (below it the
  second-order corrections to the polarisation of common semiconductors and of water stay around
  10 % or less).
- a total charge more than ``TOTAL_CHARGE_MARGIN`` (0.1 e) outside the training range;
- an atomic charge above ``CHARGE_TOLERANCE`` (1.5) × the largest of its element in the labels
  (the runaway charges of a polarisation catastrophe);
- a periodic structure for a model trained on open ones only, or the other way round; an
  element without training data.

:class:`OutOfDomainWarning` is what the calculator issues for these; :class:`NonFiniteResultError`
what it raises for a non-finite result or an energy beyond ``MAX_ENERGY_PER_ATOM``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from ase.data import atomic_numbers as ATOMIC_NUMBERS
from ase.data import chemical_symbols

from fpscf.errors import NonFiniteResultError, OutOfDomainWarning  # noqa: F401 (re-exported)

#: Warn for a pair closer than this fraction of the shortest distance of its element pair in training.
DISTANCE_TOLERANCE: float = 0.9
#: Warn for a field above this multiple of the largest |field| in training (V/Å).
FIELD_TOLERANCE: float = 1.5
#: Fields (V/Å) up to this count as inside the domain of a model trained on polarizability or
#: Born-charge labels (linear response), whatever the largest field of its structures.
RESPONSE_FIELD_ALLOWANCE: float = 0.05
#: Warn for a total charge more than this (e) outside the training range.
TOTAL_CHARGE_MARGIN: float = 0.1
#: Warn for an atomic charge above this multiple of the largest |charge| of its element in the labels.
CHARGE_TOLERANCE: float = 1.5
#: Pairs are searched up to this distance (Å) in the training data; farther pairs are "never closer".
DISTANCE_CUTOFF: float = 6.0
#: An energy per atom above the isolated-atom references (eV) beyond this is an error. Chemical
#: energies are a few eV per atom, and even the screened nuclear repulsion (ZBL) of two O atoms
#: 0.1 Å apart is about 2.4e3 eV per atom; 1e4 eV/atom is a broken evaluation, not physics.
MAX_ENERGY_PER_ATOM: float = 1.0e4
#: A force component (eV/Å) beyond this is an error: that energy bound changing over 0.01 Å, a
#: tenth of the shortest distance a structure may have (``fpscf.units.MIN_INTERATOMIC_DISTANCE``).
MAX_FORCE: float = 1.0e6
#: Version of the dict written by :meth:`TrainingDomain.to_dict`.
DOMAIN_FORMAT_VERSION = 1


@dataclass(frozen=True)
class DomainViolation:
    """One way a structure leaves the training domain: ``kind`` groups repeats (one warning per
    kind), ``message`` names the structure's value and the training range."""

    kind: str
    message: str


def pair_key(z_a: int, z_b: int) -> str:
    """``"H-O"``: the element pair key, lighter element first."""
    lo, hi = sorted((int(z_a), int(z_b)))
    return f"{chemical_symbols[lo]}-{chemical_symbols[hi]}"


def pair_label(key: str) -> str:
    """``"H-O"`` → ``"H–O"`` for messages."""
    return key.replace("-", "–")


def pair_minima(atoms: Any, cutoff: float) -> dict[str, float]:
    """Shortest distance (Å) per element pair closer than ``cutoff`` in one structure (periodic
    images included, as ASE's neighbour list finds them: O(N) cell lists, no Python pair loop)."""
    from ase.neighborlist import neighbor_list

    if len(atoms) < 1 or cutoff <= 0:
        return {}
    first, second, distance = neighbor_list("ijd", atoms, float(cutoff), self_interaction=False)
    if len(distance) == 0:
        return {}
    numbers = np.asarray(atoms.numbers)
    lo = np.minimum(numbers[first], numbers[second])
    hi = np.maximum(numbers[first], numbers[second])
    codes = lo * 1000 + hi
    order = np.lexsort((distance, codes))
    codes, distance = codes[order], distance[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    return {pair_key(int(codes[k]) // 1000, int(codes[k]) % 1000): float(distance[k]) for k in starts}


def shortest_distance(atoms: Any, cutoff: float) -> tuple[float, str] | None:
    """The shortest interatomic distance (Å) closer than ``cutoff`` and its element pair
    (``"O–H"``-style label), or None when no two atoms are that close."""
    minima = pair_minima(atoms, cutoff)
    if not minima:
        return None
    key = min(minima, key=minima.__getitem__)
    return minima[key], pair_label(key)


def _charge_labels(properties: Any) -> np.ndarray | None:
    labels = properties.labels
    if "charges" in labels:
        return np.asarray(labels["charges"], dtype=float).reshape(-1)
    if "atomic_multipoles" in labels:
        return np.asarray(labels["atomic_multipoles"], dtype=float)[:, 0]
    return None


@dataclass
class TrainingDomain:
    """The ranges of a model's training data (module docstring); plain data, JSON-serialisable."""

    elements: list[str]
    min_distances: dict[str, float | None]
    max_field: float = 0.0
    response_labels: bool = False
    total_charge_range: tuple[float, float] = (0.0, 0.0)
    max_atomic_charges: dict[str, float] = field(default_factory=dict)
    periodic: bool = False
    open: bool = True
    num_structures: int = 0
    distance_cutoff: float = DISTANCE_CUTOFF

    # ------------------------------------------------------------------ building
    @classmethod
    def from_structures(
        cls, structures: Iterable[Any], key_map: Any = None, distance_cutoff: float = DISTANCE_CUTOFF
    ) -> TrainingDomain:
        """The domain of a list of ``ase.Atoms`` with fpscf labels (fields and total charge in
        ``atoms.info``, charge labels as :class:`fpscf.data.labels.KeyMap` says)."""
        from fpscf.data.labels import read_properties

        minima: dict[str, float] = {}
        elements: set[int] = set()
        charges: dict[str, float] = {}
        max_field, response, periodic, is_open, count = 0.0, False, False, False, 0
        q_low, q_high = math.inf, -math.inf
        for index, atoms in enumerate(structures):
            properties = read_properties(atoms, key_map, index)
            count += 1
            elements.update(int(z) for z in atoms.numbers)
            for key, distance in pair_minima(atoms, distance_cutoff).items():
                minima[key] = min(distance, minima.get(key, math.inf))
            max_field = max(max_field, float(np.linalg.norm(properties.external_field)))
            response = response or any(name in properties.labels for name in ("polarizability", "born_effective_charges"))
            total = float(properties.total_charge)
            q_low, q_high = min(q_low, total), max(q_high, total)
            periodic = periodic or bool(np.any(atoms.pbc))
            is_open = is_open or not bool(np.any(atoms.pbc))
            labelled = _charge_labels(properties)
            if labelled is not None:
                for z, q in zip(atoms.numbers, labelled):
                    symbol = chemical_symbols[int(z)]
                    charges[symbol] = max(charges.get(symbol, 0.0), abs(float(q)))
        if count == 0:
            raise ValueError("TrainingDomain.from_structures: no structures given")
        ordered = sorted(elements)
        all_pairs = {pair_key(a, b) for i, a in enumerate(ordered) for b in ordered[i:]}
        return cls(
            elements=[chemical_symbols[z] for z in ordered],
            min_distances={key: minima.get(key) for key in sorted(all_pairs, key=_pair_order)},
            max_field=max_field,
            response_labels=response,
            total_charge_range=(q_low, q_high),
            max_atomic_charges={s: charges[s] for s in sorted(charges, key=ATOMIC_NUMBERS.__getitem__)},
            periodic=periodic,
            open=is_open,
            num_structures=count,
            distance_cutoff=float(distance_cutoff),
        )

    @classmethod
    def from_files(cls, paths: Iterable[Any], key_map: Any = None) -> TrainingDomain:
        """The domain of the structures of one or more extended XYZ files."""
        from fpscf.data.extxyz import read_extxyz

        structures = [atoms for path in paths for atoms in read_extxyz(path, key_map)]
        return cls.from_structures(structures, key_map)

    # ------------------------------------------------------------------ plain data
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": DOMAIN_FORMAT_VERSION,
            "elements": list(self.elements),
            "min_distances": dict(self.min_distances),
            "distance_cutoff": self.distance_cutoff,
            "max_field": self.max_field,
            "response_labels": self.response_labels,
            "total_charge_range": list(self.total_charge_range),
            "max_atomic_charges": dict(self.max_atomic_charges),
            "periodic": self.periodic,
            "open": self.open,
            "num_structures": self.num_structures,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingDomain:
        version = int(data.get("version", 1))
        if version > DOMAIN_FORMAT_VERSION:
            raise ValueError(
                f"training domain format v{version} is newer than this fpscf reads (v{DOMAIN_FORMAT_VERSION}); upgrade fpscf"
            )
        low, high = data.get("total_charge_range", (0.0, 0.0))
        return cls(
            elements=list(data["elements"]),
            min_distances={k: (None if v is None else float(v)) for k, v in data["min_distances"].items()},
            max_field=float(data.get("max_field", 0.0)),
            response_labels=bool(data.get("response_labels", False)),
            total_charge_range=(float(low), float(high)),
            max_atomic_charges={k: float(v) for k, v in data.get("max_atomic_charges", {}).items()},
            periodic=bool(data.get("periodic", False)),
            open=bool(data.get("open", True)),
            num_structures=int(data.get("num_structures", 0)),
            distance_cutoff=float(data.get("distance_cutoff", DISTANCE_CUTOFF)),
        )

    # ------------------------------------------------------------------ limits
    def distance_limit(self, key: str) -> float:
        """Å: pairs ``key`` closer than this are outside (``DISTANCE_TOLERANCE`` × the training minimum)."""
        minimum = self.min_distances.get(key)
        return DISTANCE_TOLERANCE * (self.distance_cutoff if minimum is None else minimum)

    def field_limit(self) -> float:
        """V/Å: fields stronger than this are outside."""
        return max(FIELD_TOLERANCE * self.max_field, RESPONSE_FIELD_ALLOWANCE if self.response_labels else 0.0)

    def charge_limit(self, symbol: str) -> float | None:
        """e: atomic charges of ``symbol`` larger in magnitude are outside (None: no charge labels)."""
        maximum = self.max_atomic_charges.get(symbol)
        return None if maximum is None else CHARGE_TOLERANCE * maximum

    # ------------------------------------------------------------------ checks
    def violations(self, atoms: Any, field: Any = None, total_charge: float | None = None) -> list[DomainViolation]:
        """How ``atoms`` in ``field`` (V/Å, (3,)) with ``total_charge`` (e) leaves the domain."""
        found: list[DomainViolation] = []
        present = sorted({int(z) for z in atoms.numbers})
        known = {ATOMIC_NUMBERS[s] for s in self.elements}
        for z in present:
            if z not in known:
                found.append(DomainViolation(
                    f"element:{chemical_symbols[z]}",
                    f"element {chemical_symbols[z]} is not in the training data (elements: {', '.join(self.elements)})",
                ))
        seen = [z for z in present if z in known]
        keys = {pair_key(a, b) for i, a in enumerate(seen) for b in seen[i:]}
        if keys and len(atoms) > 1:
            cutoff = max(self.distance_limit(key) for key in keys)
            for key, distance in sorted(pair_minima(atoms, cutoff).items(), key=lambda item: _pair_order(item[0])):
                if key not in keys or distance >= self.distance_limit(key):
                    continue
                minimum = self.min_distances.get(key)
                if minimum is None:
                    text = (f"{pair_label(key)} distance {distance:.2f} Å: the training data never had this pair closer "
                            f"than {self.distance_cutoff:.2f} Å")
                else:
                    text = (f"{pair_label(key)} distance {distance:.2f} Å is below the shortest in training "
                            f"({minimum:.2f} Å; warned below {DISTANCE_TOLERANCE:g}×)")
                found.append(DomainViolation(f"distance:{key}", text))
        if field is not None:
            strength = float(np.linalg.norm(np.asarray(field, dtype=float)))
            if strength > self.field_limit():
                if self.response_labels and RESPONSE_FIELD_ALLOWANCE > FIELD_TOLERANCE * self.max_field:
                    text = (f"field {strength:.3g} V/Å exceeds the linear-response range of the training data "
                            f"({RESPONSE_FIELD_ALLOWANCE:g} V/Å; largest field of a structure {self.max_field:.3g} V/Å)")
                else:
                    text = (f"field {strength:.3g} V/Å exceeds the largest in training ({self.max_field:.3g} V/Å; "
                            f"warned above {FIELD_TOLERANCE:g}×)")
                found.append(DomainViolation("field", text))
        if total_charge is not None:
            low, high = self.total_charge_range
            if not (low - TOTAL_CHARGE_MARGIN <= float(total_charge) <= high + TOTAL_CHARGE_MARGIN):
                found.append(DomainViolation(
                    "total_charge",
                    f"total charge {float(total_charge):g} e is outside the training range ({low:g} to {high:g} e)",
                ))
        if bool(np.any(atoms.pbc)) and not self.periodic:
            found.append(DomainViolation(
                "boundary", "the structure is periodic but the model was trained on open (non-periodic) structures only"
            ))
        if not bool(np.any(atoms.pbc)) and not self.open:
            found.append(DomainViolation(
                "boundary", "the structure is open (non-periodic) but the model was trained on periodic structures only"
            ))
        return found

    def check(self, atoms: Any, field: Any = None, total_charge: float | None = None) -> list[str]:
        """One human-readable line per way ``atoms`` leaves the domain (empty inside it)."""
        return [violation.message for violation in self.violations(atoms, field, total_charge)]

    def charge_violations(self, numbers: Any, charges: Any) -> list[DomainViolation]:
        """Atomic charges (e, (N,)) of atoms ``numbers`` beyond the training labels of their element
        (the largest per element, one violation per element)."""
        found: list[DomainViolation] = []
        numbers = np.asarray(numbers)
        charges = np.asarray(charges, dtype=float).reshape(-1)
        for z in sorted({int(z) for z in numbers}):
            symbol = chemical_symbols[z]
            limit = self.charge_limit(symbol)
            if limit is None:
                continue
            members = np.flatnonzero(numbers == z)
            worst = members[np.argmax(np.abs(charges[members]))]
            if abs(charges[worst]) > limit:
                found.append(DomainViolation(
                    f"charge:{symbol}",
                    f"charge {charges[worst]:+.2f} e on {symbol} (atom {worst}) exceeds the largest |q| of {symbol} "
                    f"in training ({self.max_atomic_charges[symbol]:.2f} e; warned above {CHARGE_TOLERANCE:g}×)",
                ))
        return found

    def summary(self) -> str:
        """A few lines for people (``fpscf domain``)."""
        lines = [f"training domain of {self.num_structures} structures ({', '.join(self.elements)}; "
                 + " and ".join(k for k, on in (("open", self.open), ("periodic", self.periodic)) if on) + ")"]
        for key, minimum in self.min_distances.items():
            shown = f"{minimum:.3f} Å" if minimum is not None else f"never closer than {self.distance_cutoff:g} Å"
            lines.append(f"  shortest {pair_label(key)}: {shown} (warns below {self.distance_limit(key):.3f} Å)")
        lines.append(f"  largest field: {self.max_field:.4g} V/Å (warns above {self.field_limit():.4g} V/Å"
                     + (", linear-response labels" if self.response_labels else "") + ")")
        low, high = self.total_charge_range
        lines.append(f"  total charge: {low:g} to {high:g} e")
        for symbol, q in self.max_atomic_charges.items():
            lines.append(f"  largest |q| of {symbol}: {q:.3f} e (warns above {CHARGE_TOLERANCE * q:.3f} e)")
        return "\n".join(lines)


@dataclass(frozen=True)
class DeployedDomain:
    """The domain as arrays over a model's species, for the deployed (LAMMPS) model.

    min_distances: (S, S) Å, shortest distance of each species pair in training (the search cutoff
    where the pair was never closer, inf for an element without training data); max_charges: (S,) e,
    largest |charge| per species in the labels (inf: none); field_limit V/Å (inf without a domain)."""

    present: bool
    min_distances: Any
    max_charges: Any
    max_field: float
    field_limit: float


def deployed_domain(domain: TrainingDomain | None, atomic_numbers: Iterable[int]) -> DeployedDomain:
    """:class:`DeployedDomain` of ``domain`` over the species ``atomic_numbers`` (None: no checks)."""
    import torch

    numbers = [int(z) for z in atomic_numbers]
    size = len(numbers)
    if domain is None:
        return DeployedDomain(False, torch.zeros(size, size, dtype=torch.float64),
                              torch.full((size,), math.inf, dtype=torch.float64), 0.0, math.inf)
    known = set(domain.elements)
    minima = torch.full((size, size), math.inf, dtype=torch.float64)
    for a, za in enumerate(numbers):
        for b, zb in enumerate(numbers):
            if chemical_symbols[za] in known and chemical_symbols[zb] in known:
                minimum = domain.min_distances.get(pair_key(za, zb))
                minima[a, b] = domain.distance_cutoff if minimum is None else minimum
    charges = torch.tensor(
        [domain.max_atomic_charges.get(chemical_symbols[z], math.inf) for z in numbers], dtype=torch.float64
    )
    return DeployedDomain(True, minima, charges, float(domain.max_field), float(domain.field_limit()))


def _pair_order(key: str) -> tuple[int, int]:
    a, b = key.split("-")
    return ATOMIC_NUMBERS[a], ATOMIC_NUMBERS[b]


__all__ = [
    "CHARGE_TOLERANCE",
    "DISTANCE_TOLERANCE",
    "FIELD_TOLERANCE",
    "MAX_ENERGY_PER_ATOM",
    "MAX_FORCE",
    "RESPONSE_FIELD_ALLOWANCE",
    "TOTAL_CHARGE_MARGIN",
    "DeployedDomain",
    "DomainViolation",
    "NonFiniteResultError",
    "OutOfDomainWarning",
    "TrainingDomain",
    "deployed_domain",
    "pair_minima",
    "shortest_distance",
]

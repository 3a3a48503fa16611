"""Close contacts of water and its ions: seeded scans that put the short-range repulsive wall into the data.

Six scans, each a small structure (one or two molecules, ≤ 7 atoms) with one designated contact
set exactly to the scanned distance (Å):

* ``"hh"``: two waters with an intermolecular H···H of 0.6–1.2 Å (each molecule's O–H bond
  roughly pointing at the other H, within 75°);
* ``"oo"``: two waters with O–O 1.6–2.5 Å in four orientations, cycled: ``hbond`` (the
  hydrogen-bonded dimer pushed together along O–O, the acceptor turned about the axis at random:
  the donor H ends up 0.65–1.55 Å from the acceptor O), ``anti`` (hydrogens of both pointing
  away), ``stacked`` (molecular planes parallel, face to face) and ``random``;
* ``"oh"``: one O–H bond compressed to 0.65–0.85 Å or stretched to 1.05–1.3 Å, in a monomer and in
  the hydrogen-bonded dimer (any of its four O–H bonds);
* ``"oho"``: a proton between two oxygens, O–O 2.3–2.6 Å, the proton 35–65 % of the way from one
  O to the other (plus up to 0.15 Å off the axis), in H₅O₂⁺ (+1), H₃O₂⁻ (−1) and the neutral
  water dimer, cycled;
* ``"ion_pair"``: H₃O⁺ and OH⁻ with O–O 2.3–2.8 Å (total charge 0), cycled: a hydronium H pointing
  at the hydroxide O, the hydroxide H pointing at the hydronium O, random orientation;
* ``"bend"``: one water bent far from its 104.5° (its two hydrogens 0.6–1.45 Å apart, H–O–H about
  37–98°, or opened to 1.6–1.85 Å, about 113–165°; O–H 0.93–1.0 Å), alone or as either molecule of
  the hydrogen-bonded dimer. Found in liquid MD: a model that had only seen 87–132° let one
  molecule of the box fold to 49° and collapse.

The default is the first five (:data:`DEFAULT_SCANS`); ``"bend"`` is asked for by name, so that a
sample of the default scans stays what it was when ``"bend"`` was added.

Within a scan the scanned values follow a seeded golden-ratio sequence, so any prefix covers the
range evenly. Monomers are rigid (gas-phase geometry) or flexible (O–H 0.93–1.00 Å, H–O–H
98–112°) alternately. Nothing else is closer than intended: every pair of atoms of different
molecules other than the contact pairs is at least :data:`MIN_OTHER` [scan] Å apart (for
``"oho"`` the shared proton counts as a molecule of its own), and hydrogens of one molecule are at
least 1.1 Å apart (except the bent molecule of ``"bend"``). The contact pairs are the scanned pair and the ones that come with it: the
donor H with each atom of the acceptor in the ``hbond`` orientation, the shared proton and each O of ``"oho"``.

Structures are in open boundaries with the centre of mass at the origin and a random overall
orientation. ``info``: ``sample_id``, ``total_charge`` (int, e), ``external_field`` ((3,) V/Å),
``composition`` (as in :mod:`fpscf.datagen.water`), ``scan`` (name), ``contact_distance`` (the
scanned distance, Å) and ``contact_atoms`` (atom indices of the contact pairs, flattened: the
scanned pair first, then the ones that come with it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from ase import Atoms

from fpscf.datagen.water import (
    _molecule,
    _random_field,
    _random_rotation,
    _spread_flags,
    water_dimer,
)

#: Scan names, in the order of the module docstring.
SCANS = ("hh", "oo", "oh", "oho", "ion_pair", "bend")
#: Scans sampled when none are named.
DEFAULT_SCANS = ("hh", "oo", "oh", "oho", "ion_pair")
#: Scanned range of each scan, Å (``"oh"``: compressed and stretched sub-ranges alternate;
#: ``"bend"``: folded and opened H···H sub-ranges alternate).
RANGES = {"hh": (0.6, 1.2), "oo": (1.6, 2.5), "oh": (0.65, 0.85, 1.05, 1.3), "oho": (2.3, 2.6),
          "ion_pair": (2.3, 2.8), "bend": (0.6, 1.45, 1.6, 1.85)}
#: Smallest distance between atoms of different molecules other than the contact, Å.
MIN_OTHER = {"hh": 1.5, "oo": 1.5, "oh": 1.5, "oho": 1.2, "ion_pair": 1.2, "bend": 1.5}
#: Structures of each scan per 25 of the default scans (150 structures: 30 hh, 36 oo, 36 oh, 24
#: oho, 24 ion_pair); ``"bend"`` weighs like ``"oh"`` when combined with them.
_WEIGHTS = {"hh": 5, "oo": 6, "oh": 6, "oho": 4, "ion_pair": 4, "bend": 6}
_MIN_INTRAMOLECULAR_HH = 1.1
_CONE_DEG = 75.0
_MAX_TRIES = 5000
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_STREAM_SCAN, _STREAM_OFFSET, _STREAM_FIELD, _STREAM_FIELD_VALUE = 20, 21, 22, 23


def sample_close_contacts(
    n: int,
    seed: int,
    *,
    scans: Sequence[str] = DEFAULT_SCANS,
    field_fraction: float = 0.2,
    max_field: float = 0.1,
) -> list[Atoms]:
    """Sample ``n`` close-contact structures reproducibly (module docstring for the scans).

    The scans are interleaved in a fixed pattern with weights hh 5 : oo 6 : oh 6 : oho 4 :
    ion_pair 4 : bend 6 (restricted to ``scans``); structure i uses random numbers seeded by ``seed`` and i,
    so the first m structures of a sample of n > m are a sample of m. A fraction
    ``field_fraction`` (exact within blocks of 20, ±1) gets a uniform field of random direction
    and magnitude uniform in (0, ``max_field``] V/Å.

    Args:
        n: number of structures (≥ 0).
        seed: non-negative integer seed.
        scans: which scans to include (names in :data:`SCANS`; default :data:`DEFAULT_SCANS`).
        field_fraction: fraction with a non-zero field, in [0, 1].
        max_field: largest field, V/Å (≥ 0).

    Returns:
        ``n`` structures with ``info["sample_id"] = 0..n-1``.

    Raises:
        ValueError: an argument out of range.
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n = {n!r}: expected a number of structures >= 0.")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed = {seed!r}: expected a non-negative integer.")
    unknown = [s for s in scans if s not in SCANS]
    if unknown or not scans:
        raise ValueError(f"scans = {list(scans)!r}: expected one or more of {SCANS}.")
    if not 0.0 <= field_fraction <= 1.0:
        raise ValueError(f"field_fraction = {field_fraction!r}: expected a fraction in [0, 1].")
    if not (max_field >= 0 and math.isfinite(max_field)):
        raise ValueError(f"max_field = {max_field!r}: expected a field magnitude >= 0 V/Å.")
    pattern = _pattern([s for s in SCANS if s in scans])
    offsets = {s: float(np.random.default_rng([seed, _STREAM_OFFSET, i]).random()) for i, s in enumerate(SCANS)}
    has_field = _spread_flags(n, field_fraction, seed, _STREAM_FIELD)
    builders = {"hh": _hh, "oo": _oo, "oh": _oh, "oho": _oho, "ion_pair": _ion_pair, "bend": _bend}
    structures = []
    for i in range(n):
        scan = pattern[i % len(pattern)]
        k = (i // len(pattern)) * pattern.count(scan) + pattern[: i % len(pattern)].count(scan)
        fraction = (offsets[scan] + k * _GOLDEN) % 1.0
        rng = np.random.default_rng([seed, _STREAM_SCAN, i])
        groups, contact, charge, composition, value = builders[scan](k, fraction, rng)
        atoms = _finish(groups, rng)
        field = np.zeros(3)
        if has_field[i]:
            field = _random_field(np.random.default_rng([seed, _STREAM_FIELD_VALUE, i]), max_field)
        atoms.info.update(sample_id=i, total_charge=charge, external_field=field, composition=composition,
                          scan=scan, contact_distance=float(value),
                          contact_atoms=np.array(contact, dtype=int).reshape(-1))
        structures.append(atoms)
    return structures


def _pattern(scans: list[str]) -> list[str]:
    """Smooth interleaving of the scans with their weights (largest deficit first)."""
    total = sum(_WEIGHTS[s] for s in scans)
    counts = dict.fromkeys(scans, 0)
    pattern = []
    for p in range(total):
        scan = max(scans, key=lambda s: _WEIGHTS[s] * (p + 1) / total - counts[s])
        counts[scan] += 1
        pattern.append(scan)
    return pattern


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _rotation_to(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A rotation taking unit vector ``a`` to unit vector ``b``."""
    a, b = _unit(a), _unit(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        perpendicular = _unit(np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0]))
        return _spin(perpendicular, math.pi)
    return _spin(axis / s, math.atan2(s, c))


def _spin(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by ``angle`` (rad) about unit vector ``axis`` (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _cone(axis: np.ndarray, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Random unit vector uniform in solid angle within ``max_deg`` of ``axis``."""
    cos_theta = 1.0 - rng.random() * (1.0 - math.cos(math.radians(max_deg)))
    phi = rng.uniform(0, 2 * math.pi)
    local = np.array([math.sqrt(1 - cos_theta**2) * math.cos(phi),
                      math.sqrt(1 - cos_theta**2) * math.sin(phi), cos_theta])
    return _rotation_to(np.array([0, 0, 1.0]), axis) @ local


def _align(local: np.ndarray, direction_local: np.ndarray, target: np.ndarray,
           rng: np.random.Generator) -> np.ndarray:
    """Rotate ``local`` so that ``direction_local`` points along ``target``, random spin about it."""
    rotation = _spin(_unit(target), rng.uniform(0, 2 * math.pi)) @ _rotation_to(direction_local, target)
    return local @ rotation.T


def _water(rng: np.random.Generator, flexible: bool, first_bond: float | None = None) -> np.ndarray:
    """Water with O at the origin, H in the xy-plane, bisector along +y; O–H 0.9572 Å and 104.52°
    (rigid) or 0.93–1.00 Å and 98–112° (flexible); ``first_bond`` fixes the first O–H (Å)."""
    if flexible:
        r1, r2, angle = rng.uniform(0.93, 1.0), rng.uniform(0.93, 1.0), rng.uniform(98.0, 112.0)
    else:
        r1 = r2 = 0.9572
        angle = 104.52
    r1 = r1 if first_bond is None else first_bond
    half = math.radians(angle) / 2
    return np.array([[0, 0, 0], [r1 * math.sin(half), r1 * math.cos(half), 0],
                     [-r2 * math.sin(half), r2 * math.cos(half), 0]])


def _group(symbols: str, positions: np.ndarray) -> Atoms:
    return Atoms(symbols, positions=positions)


def _finish(groups: list[Atoms], rng: np.random.Generator) -> Atoms:
    """Join the groups, rotate at random, put the centre of mass at the origin."""
    atoms = Atoms()
    for group in groups:
        atoms += group
    atoms.positions = atoms.positions @ _random_rotation(rng).T
    atoms.positions -= atoms.get_center_of_mass()
    atoms.pbc = False
    return atoms


def closest_other(groups: list[Atoms], contacts: Sequence[tuple[int, int]]) -> float:
    """Shortest distance (Å) between atoms of different groups, the ``contacts`` pairs (indices in
    the joined structure) left out."""
    offsets = np.cumsum([0] + [len(g) for g in groups])
    skip = {frozenset(pair) for pair in contacts}
    best = math.inf
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            d = np.linalg.norm(groups[a].positions[:, None] - groups[b].positions[None], axis=-1)
            for i in range(d.shape[0]):
                for j in range(d.shape[1]):
                    if frozenset((int(offsets[a] + i), int(offsets[b] + j))) not in skip:
                        best = min(best, float(d[i, j]))
    return best


def _intramolecular_ok(groups: list[Atoms], skip: int | None = None) -> bool:
    """Hydrogens of each group (but group ``skip``) at least 1.1 Å apart."""
    for index, group in enumerate(groups):
        if index == skip:
            continue
        h = group.positions[group.numbers == 1]
        if len(h) > 1:
            d = np.linalg.norm(h[:, None] - h[None], axis=-1)[np.triu_indices(len(h), k=1)]
            if d.min() < _MIN_INTRAMOLECULAR_HH:
                return False
    return True


def _accept(groups: list[Atoms], contacts: Sequence[tuple[int, int]], scan: str, skip: int | None = None) -> bool:
    """Other intermolecular distances above the scan's floor; hydrogens of each group (but ``skip``) apart."""
    return closest_other(groups, contacts) >= MIN_OTHER[scan] and _intramolecular_ok(groups, skip)


def _value(fraction: float, low: float, high: float) -> float:
    return low + (high - low) * fraction


# --------------------------------------------------------------------------------------------
# Scans: each returns (groups, contact pairs, total charge, composition, scanned distance)
# --------------------------------------------------------------------------------------------


def _hh(k: int, fraction: float, rng: np.random.Generator):
    distance = _value(fraction, *RANGES["hh"])
    flexible = k % 2 == 1
    a = _water(rng, flexible) @ _random_rotation(rng).T
    ha = int(rng.integers(1, 3))
    for _ in range(_MAX_TRIES):
        u = _cone(_unit(a[ha] - a[0]), _CONE_DEG, rng)
        local = _water(rng, flexible)
        hb = int(rng.integers(1, 3))
        b = _align(local, local[hb], _cone(-u, _CONE_DEG, rng), rng)
        b += a[ha] + distance * u - b[hb]
        groups = [_group("OH2", a), _group("OH2", b)]
        if _accept(groups, [(ha, 3 + hb)], "hh"):
            return groups, [(ha, 3 + hb)], 0, "water_2", distance
    raise RuntimeError(f"hh scan: no admissible geometry at {distance:.3f} Å")


def _oo(k: int, fraction: float, rng: np.random.Generator):
    distance = _value(fraction, *RANGES["oo"])
    orientation = ("hbond", "anti", "stacked", "random")[k % 4]
    flexible = (k // 4) % 2 == 1
    axis = np.array([0, 0, 1.0])
    if orientation == "hbond":  # S22 dimer (0.03 Å noise if flexible), acceptor moved along O–O
        dimer = water_dimer().positions + (rng.normal(0.0, 0.03, (6, 3)) if flexible else 0.0)
        along = _unit(dimer[3] - dimer[0])
        turn = _spin(along, rng.uniform(0, 2 * math.pi))
        acceptor = (dimer[3:] - dimer[3]) @ turn.T + dimer[0] + distance * along
        groups = [_group("OH2", dimer[:3]), _group("OH2", acceptor)]
        contacts = [(0, 3), (2, 3), (2, 4), (2, 5)]
        if _accept(groups, contacts, "oo"):
            return groups, contacts, 0, "water_2", distance
        raise RuntimeError(f"oo scan (hbond): no admissible geometry at {distance:.3f} Å")
    for _ in range(_MAX_TRIES):
        a_local, b_local = _water(rng, flexible), _water(rng, flexible)
        if orientation == "anti":  # bisector (+y) of A along -z, of B along +z
            a = _align(a_local, np.array([0, 1.0, 0]), -axis, rng)
            b = _align(b_local, np.array([0, 1.0, 0]), axis, rng)
        elif orientation == "stacked":  # plane normals (z) along the O–O axis
            a = _align(a_local, np.array([0, 0, 1.0]), axis, rng)
            b = _align(b_local, np.array([0, 0, 1.0]), axis, rng)
        else:
            a, b = a_local @ _random_rotation(rng).T, b_local @ _random_rotation(rng).T
        groups = [_group("OH2", a), _group("OH2", b + distance * axis)]
        if _accept(groups, [(0, 3)], "oo"):
            return groups, [(0, 3)], 0, "water_2", distance
    raise RuntimeError(f"oo scan ({orientation}): no admissible geometry at {distance:.3f} Å")


def _oh(k: int, fraction: float, rng: np.random.Generator):
    low_c, high_c, low_s, high_s = RANGES["oh"]
    compressed = k % 4 < 2
    distance = _value(fraction, low_c, high_c) if compressed else _value(fraction, low_s, high_s)
    if k % 2 == 0:  # monomer, flexible, first O–H set
        for _ in range(_MAX_TRIES):
            groups = [_group("OH2", _water(rng, True, first_bond=distance))]
            if _intramolecular_ok(groups):
                return groups, [(0, 1)], 0, "water_1", distance
        raise RuntimeError(f"oh scan: no admissible monomer at {distance:.3f} Å")
    for _ in range(_MAX_TRIES):  # dimer (S22 geometry, 0.03 Å noise), one of its four O–H set
        positions = water_dimer().positions + rng.normal(0.0, 0.03, (6, 3))
        h = int(rng.choice([1, 2, 4, 5]))
        o = 0 if h < 3 else 3
        positions[h] = positions[o] + distance * _unit(positions[h] - positions[o])
        groups = [_group("OH2", positions[:3]), _group("OH2", positions[3:])]
        if _accept(groups, [(o, h)], "oh"):
            return groups, [(o, h)], 0, "water_2", distance
    raise RuntimeError(f"oh scan: no admissible dimer at {distance:.3f} Å")


def _bent_water(distance: float, rng: np.random.Generator) -> np.ndarray:
    """Water (O at the origin, bisector along +y) with O–H 0.93–1.0 Å and its hydrogens
    ``distance`` Å apart (law of cosines)."""
    r1, r2 = rng.uniform(0.93, 1.0, 2)
    cosine = (r1 * r1 + r2 * r2 - distance * distance) / (2 * r1 * r2)
    angle = math.acos(min(1.0, max(-1.0, cosine)))
    h1 = r1 * np.array([math.sin(angle / 2), math.cos(angle / 2), 0.0])
    h2 = r2 * np.array([-math.sin(angle / 2), math.cos(angle / 2), 0.0])
    return np.array([[0.0, 0.0, 0.0], h1, h2])


def _bend(k: int, fraction: float, rng: np.random.Generator):
    low_f, high_f, low_o, high_o = RANGES["bend"]
    folded = k % 4 < 2
    distance = _value(fraction, low_f, high_f) if folded else _value(fraction, low_o, high_o)
    if k % 2 == 0:  # monomer
        return [_group("OH2", _bent_water(distance, rng))], [(1, 2)], 0, "water_1", distance
    for _ in range(_MAX_TRIES):  # hydrogen-bonded dimer (S22, 0.03 Å noise), donor or acceptor bent
        positions = water_dimer().positions + rng.normal(0.0, 0.03, (6, 3))
        o = int(rng.choice([0, 3]))
        local = _bent_water(distance, rng)
        old = positions[o : o + 3]
        bisector = _unit(old[1] + old[2] - 2 * old[0])
        normal = _unit(np.cross(old[1] - old[0], old[2] - old[0]))
        frame = np.stack([np.cross(bisector, normal), bisector, normal], axis=1)  # local x, y, z
        positions[o : o + 3] = old[0] + local @ frame.T
        groups = [_group("OH2", positions[:3]), _group("OH2", positions[3:])]
        bent = 0 if o == 0 else 1
        pair = (o + 1, o + 2)
        if _accept(groups, [], "bend", skip=bent):
            # the hydrogens of the bent molecule are the contact; the donor's O–H···O keeps its O–O
            return groups, [pair], 0, "water_2", distance
    raise RuntimeError(f"bend scan: no admissible dimer at {distance:.3f} Å")


def _end_hydrogens(count: int, toward: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``count`` H positions (O at the origin) at 100–120° from ``toward``, 0.95–1.00 Å."""
    perpendicular = _unit(np.cross(toward, [1.0, 0, 0] if abs(toward[0]) < 0.9 else [0, 1.0, 0]))
    phi = rng.uniform(0, 2 * math.pi)
    positions = []
    for _ in range(count):
        theta = math.radians(rng.uniform(100.0, 120.0))
        side = _spin(toward, phi) @ perpendicular
        positions.append(rng.uniform(0.95, 1.0) * (math.cos(theta) * toward + math.sin(theta) * side))
        phi += math.radians(rng.uniform(100.0, 140.0))
    return np.array(positions)


def _oho(k: int, fraction: float, rng: np.random.Generator):
    distance = _value(fraction, *RANGES["oho"])
    charge, n1, n2, composition = ((1, 2, 2, "hydronium_1water"), (-1, 1, 1, "hydroxide_1water"),
                                   (0, 1, 2, "water_2"))[k % 3]
    axis = np.array([0, 0, 1.0])
    for _ in range(_MAX_TRIES):
        offset = _spin(axis, rng.uniform(0, 2 * math.pi)) @ np.array([rng.uniform(0, 0.15), 0, 0])
        proton = rng.uniform(0.35, 0.65) * distance * axis + offset
        end1 = _end_hydrogens(n1, _unit(proton), rng)
        end2 = distance * axis + _end_hydrogens(n2, _unit(proton - distance * axis), rng)
        groups = [_group("O" + "H" * n1, np.vstack([np.zeros(3), end1])),
                  _group("O" + "H" * n2, np.vstack([distance * axis, end2])),
                  _group("H", proton[None])]
        shared = 2 + n1 + n2
        contacts = [(0, 1 + n1), (0, shared), (1 + n1, shared)]
        if _accept(groups, contacts, "oho"):
            return groups, contacts, charge, composition, distance
    raise RuntimeError(f"oho scan: no admissible geometry at {distance:.3f} Å")


def _ion_pair(k: int, fraction: float, rng: np.random.Generator):
    distance = _value(fraction, *RANGES["ion_pair"])
    orientation = ("hydronium_donor", "hydroxide_donor", "random")[k % 3]
    axis = np.array([0, 0, 1.0])
    hydronium, hydroxide = _molecule("hydronium").positions, _molecule("hydroxide").positions
    for _ in range(_MAX_TRIES):
        if orientation == "hydronium_donor":  # one hydronium H along +axis, hydroxide H away
            a = _align(hydronium, hydronium[1], axis, rng)
            b = _align(hydroxide, hydroxide[1], _cone(axis, 80.0, rng), rng)
        elif orientation == "hydroxide_donor":  # hydroxide H along -axis, hydronium H's away
            a = _align(hydronium, np.array([0, 0, 1.0]), -axis, rng)
            b = _align(hydroxide, hydroxide[1], -axis, rng)
        else:
            a, b = hydronium @ _random_rotation(rng).T, hydroxide @ _random_rotation(rng).T
        groups = [_group("OH3", a), _group("OH", b + distance * axis)]
        if _accept(groups, [(0, 4)], "ion_pair"):
            return groups, [(0, 4)], 0, "hydronium_hydroxide", distance
    raise RuntimeError(f"ion_pair scan ({orientation}): no admissible geometry at {distance:.3f} Å")


__all__ = ["DEFAULT_SCANS", "MIN_OTHER", "RANGES", "SCANS", "closest_other", "sample_close_contacts"]

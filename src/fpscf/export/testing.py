"""A TorchScript toy model obeying the pair_style fpscf contract, and its evaluation on ASE Atoms.

The toy is a smooth, conservative many-body potential in plain torch, so the LAMMPS plugin can be
tested end to end without a trained fpscf model. For receiver atom i with neighbours j (r < r_max,
edge vector r_ij = x_j − x_i, cutoff c(r) = (1 − (r/r_max)²)³):

* bond charge transfer  t_ij = (χ_j − χ_i + β ε·r_ij) c(r_ij)   (antisymmetric, so Σ_i q_i = 0)
* charge               q_i  = Σ_j t_ij                              e
* bond dipole          d_i  = −½ Σ_j t_ij r_ij                      e·Å (D = Σ_i d_i = Σ_i q_i x_i)
* energy  E_i = ½ Σ_j V_Morse(r_ij) c(r_ij) + ½ κ q_i² − ε·d_i  [+ ½ γ q_i Σ_j q_j c(r_ij) with two interactions]

ε is the applied field (V/Å). Forces and virials come from ``torch.autograd.grad`` of Σ E_i over the
owned atoms with respect to the edge vectors g_e = ∂E/∂r_e: F_sender −= g_e, F_receiver += g_e, and
the edge virial w_e = −r_e ⊗ g_e is split half to each end (symmetrised, LAMMPS order
xx, yy, zz, xy, xz, yz) and given whole to the sender as the centroid virial (9 components).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING, Dict, List, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    import ase

#: Pauling electronegativities of a few elements; other elements get 2.0.
_ELECTRONEGATIVITY = {"H": 2.20, "Li": 0.98, "C": 2.55, "N": 3.04, "O": 3.44, "F": 3.98, "Na": 0.93,
                      "Mg": 1.31, "Al": 1.61, "Si": 1.90, "P": 2.19, "S": 2.58, "Cl": 3.16, "K": 0.82}


@dataclass(frozen=True)
class ToyParameters:
    """Parameters of the toy potential; per-pair Morse values come from per-element ones.

    Morse: depth ``morse_depth`` eV, stiffness ``morse_stiffness`` 1/Å, minimum at the sum of
    ASE's covalent radii (Å). Charges: ``transfer`` e per Pauling unit of electronegativity
    difference, field response ``field_response`` e/V, hardness ``hardness`` eV/e², charge–charge
    coupling ``coupling`` eV/e² (second interaction only).
    """

    morse_depth: float = 1.0
    morse_stiffness: float = 2.0
    transfer: float = 0.15
    field_response: float = 0.3
    hardness: float = 2.0
    coupling: float = 0.5
    electronegativity: dict[str, float] = dataclass_field(default_factory=lambda: dict(_ELECTRONEGATIVITY))


class ToyFieldModel(torch.nn.Module):
    """Toy pair_style fpscf model (see the module docstring); forward follows the plugin contract."""

    def __init__(self, species: Sequence[str], r_max: float, periodic_only: bool, num_interactions: int,
                 parameters: ToyParameters) -> None:
        super().__init__()
        from ase.data import atomic_numbers, covalent_radii

        unknown = [s for s in species if s not in atomic_numbers]
        if unknown:
            raise ValueError(f"unknown element symbols {unknown}; use symbols such as 'O', 'H'")
        if num_interactions not in (1, 2):
            raise ValueError(f"num_interactions must be 1 or 2, got {num_interactions}")
        self.r_max: float = float(r_max)
        self.species_symbols: List[str] = list(species)
        self.periodic_only: bool = bool(periodic_only)
        self.num_interactions: int = int(num_interactions)
        self.has_centroid_virial: bool = True
        self.scf_tolerance: float = 1e-6  # set by the pair style; unused by the toy (no SCF loop)
        self.max_scf_steps: int = 200
        radii = torch.tensor([covalent_radii[atomic_numbers[s]] for s in species], dtype=torch.float64)
        chi = torch.tensor([parameters.electronegativity.get(s, 2.0) for s in species], dtype=torch.float64)
        self.register_buffer("morse_r0", radii[:, None] + radii[None, :])
        self.register_buffer("chi", parameters.transfer * chi)
        self.morse_depth: float = parameters.morse_depth
        self.morse_stiffness: float = parameters.morse_stiffness
        self.field_response: float = parameters.field_response
        self.hardness: float = parameters.hardness
        self.coupling: float = parameters.coupling

    def forward(self, positions: torch.Tensor, species: torch.Tensor, n_local: int, edge_index: torch.Tensor,
                cell: torch.Tensor, pbc: torch.Tensor, field: torch.Tensor, image_shifts: torch.Tensor,
                state: torch.Tensor, ghost_owners: torch.Tensor) -> Dict[str, torch.Tensor]:
        """positions (n_all, 3) Å; species (n_all,); edge_index (2, E) receiver, sender; field (3,) V/Å;
        image_shifts, state (no per-atom state: state_size 0) and ghost_owners are not used by the toy."""
        n_all = positions.shape[0]
        receiver, sender = edge_index[0], edge_index[1]
        vectors = (positions[sender] - positions[receiver]).detach().requires_grad_(True)
        lengths = torch.linalg.norm(vectors, dim=1)
        x = lengths / self.r_max
        cutoff = torch.where(x < 1.0, (1.0 - x * x) ** 3, torch.zeros_like(x))
        zi, zj = species[receiver], species[sender]

        morse = self.morse_depth * ((1.0 - torch.exp(-self.morse_stiffness * (lengths - self.morse_r0[zi, zj]))) ** 2
                                    - 1.0) * cutoff
        transfer = (self.chi[zj] - self.chi[zi] + self.field_response * (vectors @ field)) * cutoff
        charges = torch.zeros(n_all, dtype=positions.dtype).index_add(0, receiver, transfer)
        dipoles = torch.zeros(n_all, 3, dtype=positions.dtype).index_add(0, receiver, -0.5 * transfer[:, None] * vectors)
        energies = (torch.zeros(n_all, dtype=positions.dtype).index_add(0, receiver, 0.5 * morse)
                    + 0.5 * self.hardness * charges**2 - dipoles @ field)
        if self.num_interactions > 1:
            neighbour_charge = torch.zeros(n_all, dtype=positions.dtype).index_add(0, receiver, charges[sender] * cutoff)
            energies = energies + 0.5 * self.coupling * charges * neighbour_charge

        local_energies = energies[:n_local]
        grads = torch.autograd.grad([local_energies.sum()], [vectors])
        g = grads[0]
        assert g is not None
        forces = torch.zeros(n_all, 3, dtype=positions.dtype).index_add(0, receiver, g).index_add(0, sender, -g)
        w = -vectors.detach()[:, :, None] * g[:, None, :]  # w[e, a, b] = r_a f_b
        rows = torch.tensor([0, 1, 2, 0, 0, 1, 1, 2, 2])
        cols = torch.tensor([0, 1, 2, 1, 2, 2, 0, 0, 1])
        w9 = w[:, rows, cols]
        w6 = 0.5 * (w9[:, :6] + torch.cat([w9[:, :3], w9[:, 6:]], dim=1))  # symmetrised
        virial = (torch.zeros(n_all, 6, dtype=positions.dtype).index_add(0, receiver, 0.5 * w6)
                  .index_add(0, sender, 0.5 * w6))
        centroid = torch.zeros(n_all, 9, dtype=positions.dtype).index_add(0, sender, w9)
        return {
            "atomic_energies": local_energies.detach(),
            "forces": forces,
            "virial": virial,
            "centroid_virial": centroid,
            "charges": charges[:n_local].detach(),
            "dipole": dipoles[:n_local].sum(0).detach(),
        }


def toy_module(species: Sequence[str] = ("O", "H"), r_max: float = 4.0, *, periodic_only: bool = False,
               num_interactions: int = 1, parameters: ToyParameters | None = None,
               path: str | os.PathLike[str] | None = None) -> torch.jit.ScriptModule:
    """The toy model scripted with TorchScript (saved to ``path`` for ``pair_coeff`` if given).

    ``species``: element symbols, index = species id; ``r_max`` Å; ``num_interactions`` 1 or 2
    (2 adds a neighbour-charge term, so ghosts need neighbour lists of their own).
    """
    module = torch.jit.script(ToyFieldModel(species, r_max, periodic_only, num_interactions,
                                            parameters or ToyParameters()))
    if path is not None:
        module.save(str(path))
    return module


def evaluate_atoms(module: torch.nn.Module, atoms: "ase.Atoms", field: Sequence[float] = (0.0, 0.0, 0.0),
                   state: np.ndarray | None = None) -> dict[str, np.ndarray | float]:
    """Evaluate a contract module on ASE Atoms in Python, building the ghost atoms LAMMPS would.

    Ghosts are the periodic images within ``num_interactions * r_max`` of the cell's atoms (``r_max``
    for models with ``ghost_exchange``, which take ghost features from their owners); edges
    join every pair closer than ``r_max``. Forces and virials on ghosts are folded back onto
    their atoms. Returns ASE-style arrays: ``energy`` eV, ``energies`` (N,) eV, ``forces`` (N, 3)
    eV/Å, ``stress`` (6,) eV/Å³ in ASE's Voigt order (periodic cells only, else absent),
    ``virials`` (N, 6) eV in LAMMPS order xx, yy, zz, xy, xz, yz, ``charges`` (N,) e, ``dipole`` (3,) e·Å,
    and ``state`` (N, state_size) for models that keep one (pass it back as ``state`` to warm-start;
    the default is NaN rows: no previous step); ``domain`` and ``binding_energy`` as the model returns them.
    """
    from ase.neighborlist import neighbor_list
    from scipy.spatial import cKDTree

    symbols = list(getattr(module, "species_symbols"))
    missing = sorted(set(atoms.get_chemical_symbols()) - set(symbols))
    if missing:
        raise ValueError(f"elements {missing} are not in the model's species {symbols}")
    r_max = float(getattr(module, "r_max"))
    layers = int(getattr(module, "num_interactions", 1))
    shell = 1 if bool(getattr(module, "ghost_exchange", False)) else layers
    n = len(atoms)
    species = np.array([symbols.index(s) for s in atoms.get_chemical_symbols()])
    cell = np.asarray(atoms.cell.array, dtype=float)

    # ghost images (atom, shift) within layers * r_max of some atom of the cell
    owners, shifts = [], []
    if atoms.pbc.any():
        _, j, shift = neighbor_list("ijS", atoms, shell * r_max)
        image = np.any(shift != 0, axis=1)
        unique = np.unique(np.column_stack([j[image], shift[image]]), axis=0)
        owners, shifts = list(unique[:, 0]), list(unique[:, 1:])
    owner = np.concatenate([np.arange(n), np.array(owners, dtype=int)])
    all_positions = np.array(atoms.positions, dtype=float)
    if shifts:
        all_positions = np.concatenate([all_positions, atoms.positions[owners] + np.array(shifts) @ cell])
    pairs = cKDTree(all_positions).query_pairs(r_max, output_type="ndarray")
    receiver, sender = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
    if layers == 1 or bool(getattr(module, "ghost_exchange", False)):
        keep = receiver < n
        receiver, sender = receiver[keep], sender[keep]

    state_size = int(getattr(module, "state_size", 0))
    if state is None:
        state = np.full((n, state_size), np.nan)
    with torch.enable_grad():
        out = module(
            torch.tensor(all_positions, dtype=torch.float64), torch.tensor(species[owner], dtype=torch.int64), n,
            torch.tensor(np.stack([receiver, sender]), dtype=torch.int64), torch.tensor(cell, dtype=torch.float64),
            torch.tensor(atoms.pbc, dtype=torch.bool), torch.tensor(np.asarray(field, float), dtype=torch.float64),
            torch.zeros(n, 3, dtype=torch.float64), torch.tensor(np.asarray(state, float), dtype=torch.float64),
            torch.tensor(owner, dtype=torch.int64),
        )
    forces, virials = np.zeros((n, 3)), np.zeros((n, 6))
    np.add.at(forces, owner, out["forces"].detach().numpy())
    np.add.at(virials, owner, out["virial"].detach().numpy())
    energies = out["atomic_energies"].detach().numpy()
    charges = out["charges"].detach().numpy()
    dipole = out["dipole"].detach().numpy() if "dipole" in out else charges @ atoms.positions
    results: dict[str, np.ndarray | float] = {
        "energy": float(energies.sum()), "energies": energies, "forces": forces, "virials": virials,
        "charges": charges, "dipole": dipole,
    }
    for name in ("state", "domain", "binding_energy"):  # domain (7,), binding_energy (1,): see DeployedModel
        if name in out:
            results[name] = out[name].detach().numpy()
    for name in ("scf_steps", "adjoint_steps"):
        if name in out:
            results[name] = int(out[name][0])
    if atoms.pbc.all():
        w = virials.sum(axis=0)  # xx, yy, zz, xy, xz, yz
        results["stress"] = -np.array([w[0], w[1], w[2], w[5], w[4], w[3]]) / atoms.get_volume()
    return results

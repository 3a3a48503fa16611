"""Short-range nuclear repulsion: the ZBL universal screened Coulomb potential (Ziegler, Biersack,
Littmark, *The Stopping and Range of Ions in Solids*, 1985), switched off smoothly at a fraction of
the covalent-radius sum, times a learnt factor that can only make it stronger.

``E_ij = (1 + softplus(w_{s_i s_j})) · k_e Z_i Z_j / r · φ(r / a_ij) · u(r / r_c,ij)`` with
``a_ij = 0.46850 Å / (Z_i^0.23 + Z_j^0.23)``, ``φ`` the four-exponential ZBL screening function,
``r_c,ij = cutoff_factor · (R_cov,i + R_cov,j)`` and ``u`` the polynomial envelope of
:class:`~fpscf.nn.radial.PolynomialCutoff` (u, u', u'' vanish at r_c). Every learnt term of the model
is bounded at short range (the Bessel basis is finite at r → 0, the density response is bounded),
while ``E_ij`` grows as ``k_e Z_i Z_j / r``: any pair pushed together ends on a repulsive wall, and
the learnt factor ``1 + softplus(w) ≥ 1`` cannot cancel it. This is the same prior as MACE's and
NequIP's ZBL option; the factor lets training stiffen the wall where close-contact data asks for it.
"""

from typing import List

import torch
from ase.data import covalent_radii

from fpscf.units import COULOMB_CONSTANT

#: ZBL screening length prefactor 0.8854 a0, in Å.
ZBL_SCREENING_LENGTH = 0.46850
#: ZBL screening exponent of the atomic numbers.
ZBL_EXPONENT = 0.23
#: Amplitudes and decay constants of the universal screening function φ(x) = Σ c_k exp(−d_k x).
ZBL_AMPLITUDES = (0.18175, 0.50986, 0.28022, 0.02817)
ZBL_DECAYS = (3.19980, 0.94229, 0.40290, 0.20162)
#: Raw value of the learnt stiffening w at construction: 1 + softplus(−6) ≈ 1.0025.
INITIAL_STIFFENING = -6.0
#: Exponent p of the switching envelope (as MACE's ZBL: smooth to the second derivative).
ENVELOPE_EXPONENT = 6.0

REPULSION_TYPES = ("zbl", "none")


class ZBLRepulsion(torch.nn.Module):
    """Pair repulsion between all neighbours. ``atomic_numbers``: the model's species (S,);
    ``cutoff_factor``: the switch-off distance as a multiple of the covalent-radius sum."""

    envelope_exponent: float

    def __init__(self, atomic_numbers: List[int], cutoff_factor: float = 1.0) -> None:
        super().__init__()
        if not cutoff_factor > 0:
            raise ValueError(f"repulsion_cutoff_factor must be > 0, got {cutoff_factor!r}")
        z = torch.tensor([float(v) for v in atomic_numbers], dtype=torch.get_default_dtype())
        radii = torch.tensor([float(covalent_radii[int(v)]) for v in atomic_numbers], dtype=z.dtype)
        # k_e Z_i Z_j (S, S) eV·Å: the unscreened nuclear repulsion times r
        self.register_buffer("nuclear_coulomb", COULOMB_CONSTANT * z[:, None] * z[None, :])
        powered = z**ZBL_EXPONENT
        self.register_buffer("screening_lengths", ZBL_SCREENING_LENGTH / (powered[:, None] + powered[None, :]))
        self.register_buffer("cutoffs", cutoff_factor * (radii[:, None] + radii[None, :]))
        self.register_buffer("amplitudes", torch.tensor(ZBL_AMPLITUDES, dtype=z.dtype))
        self.register_buffer("decays", torch.tensor(ZBL_DECAYS, dtype=z.dtype))
        self.envelope_exponent = ENVELOPE_EXPONENT
        self.stiffening = torch.nn.Parameter(torch.full((len(atomic_numbers), len(atomic_numbers)), INITIAL_STIFFENING))

    def largest_cutoff(self) -> float:
        """Largest switch-off distance (Å): must not exceed the model's r_max."""
        return float(self.cutoffs.max())

    def pair_energies(self, lengths: torch.Tensor, species_a: torch.Tensor, species_b: torch.Tensor) -> torch.Tensor:
        """Repulsion (E,) eV of pairs at distances ``lengths`` (E,) Å with species indices (E,)."""
        cutoff = self.cutoffs[species_a, species_b]
        x = lengths / self.screening_lengths[species_a, species_b]
        screening = (self.amplitudes * torch.exp(-self.decays * x[:, None])).sum(-1)
        u = lengths / cutoff
        p = self.envelope_exponent
        envelope = (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * torch.pow(u, p)
            + p * (p + 2.0) * torch.pow(u, p + 1.0)
            - p * (p + 1.0) / 2.0 * torch.pow(u, p + 2.0)
        )
        envelope = torch.where(u < 1.0, envelope, torch.zeros_like(envelope))
        stiffening = 0.5 * (self.stiffening + self.stiffening.T)
        factor = 1.0 + torch.nn.functional.softplus(stiffening[species_a, species_b])
        coulomb = self.nuclear_coulomb[species_a, species_b] / lengths
        return factor * coulomb * screening * envelope

    def forward(self, vectors: torch.Tensor, species: torch.Tensor, senders: torch.Tensor, receivers: torch.Tensor, num_nodes: int) -> torch.Tensor:
        """Per-atom repulsion (num_nodes,) eV: half of each directed edge's pair energy goes to its
        receiver. vectors (E, 3) Å; species (N,) indices of every atom the edges name; senders,
        receivers (E,) atom indices (each pair appears once in each direction, or once per owning
        rank for pairs that cross ranks)."""
        lengths = torch.linalg.norm(vectors, dim=-1)
        energies = self.pair_energies(lengths, species[senders], species[receivers])
        return vectors.new_zeros(num_nodes).index_add(0, receivers, 0.5 * energies)

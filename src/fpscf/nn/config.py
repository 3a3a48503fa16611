"""Typed configuration of the equivariant encoder and the irreps it implies."""

from __future__ import annotations

from dataclasses import dataclass

from e3nn import o3


def natural_irreps(num_channels: int, max_l: int) -> o3.Irreps:
    """``num_channels x (0e + 1o + 2e + ...)`` up to ``max_l``, parity ``(-1)^l`` (polar tensors)."""
    return o3.Irreps([(num_channels, (l, (-1) ** l)) for l in range(max_l + 1)])


@dataclass(frozen=True)
class EncoderConfig:
    """Hyper-parameters of :class:`fpscf.nn.EquivariantEncoder`.

    Attributes
    ----------
    num_species:
        Number of distinct species the model knows; inputs carry a species index in ``[0, num_species)``.
    r_max:
        Cutoff radius in Å. Edges longer than ``r_max`` contribute exactly zero, and features go to zero
        smoothly (value, first and second derivative) as an edge length approaches ``r_max``.
    num_bessel:
        Number of radial Bessel basis functions.
    polynomial_cutoff_p:
        Exponent ``p`` of the polynomial cutoff envelope (NequIP/MACE style).
    num_channels:
        Multiplicity of every irrep of the node features and of the messages.
    max_L:
        Node features are ``num_channels x (0e + 1o + ... )`` up to ``l = max_L`` with parity ``(-1)^l``.
    sh_max_l:
        Largest degree of the edge spherical harmonics (and of the messages fed to the product block).
    num_interactions:
        Number of interaction layers; the encoder returns node features after each one.
    correlation:
        Body order of the product block (1 = linear in the messages, 2 = two-body products of
        messages, i.e. three-body features, ...).
    radial_mlp_hidden:
        Width of the hidden layers of the radial MLP mapping the Bessel basis to tensor-product weights.
    avg_num_neighbors:
        Messages summed over neighbours are divided by this number (dimensionless).
    radial_core_radius:
        Å; edges shorter than this are seen as this long (a smooth clamp, :func:`fpscf.nn.radial.core_clamped`),
        so every learnt function of the geometry is flat for closer approaches and cannot cancel the
        short-range repulsion. 0 disables the clamp.
    """

    num_species: int
    r_max: float
    num_bessel: int = 8
    polynomial_cutoff_p: int = 5
    num_channels: int = 32
    max_L: int = 1
    sh_max_l: int = 3
    num_interactions: int = 2
    correlation: int = 2
    radial_mlp_hidden: int = 32
    avg_num_neighbors: float = 10.0
    radial_core_radius: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            ("num_species", self.num_species >= 1, "an integer >= 1"),
            ("r_max", self.r_max > 0.0, "a positive cutoff in Å"),
            ("num_bessel", self.num_bessel >= 1, "an integer >= 1"),
            ("polynomial_cutoff_p", self.polynomial_cutoff_p >= 2, "an integer >= 2 (5 or 6 are usual)"),
            ("num_channels", self.num_channels >= 1, "an integer >= 1"),
            ("max_L", self.max_L >= 0, "an integer >= 0"),
            ("sh_max_l", self.sh_max_l >= 1, "an integer >= 1"),
            ("num_interactions", self.num_interactions >= 1, "an integer >= 1"),
            ("correlation", self.correlation >= 1, "an integer >= 1 (2 or 3 are usual)"),
            ("radial_mlp_hidden", self.radial_mlp_hidden >= 1, "an integer >= 1"),
            ("avg_num_neighbors", self.avg_num_neighbors > 0.0, "a positive number"),
            ("radial_core_radius", 0.0 <= self.radial_core_radius < self.r_max, "0 (off) or a length in [0, r_max) Å"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"EncoderConfig.{name}={getattr(self, name)!r} is invalid: expected {expected}.")
        if self.max_L > 2 * self.sh_max_l:
            raise ValueError(
                f"EncoderConfig.max_L={self.max_L} cannot be reached with sh_max_l={self.sh_max_l}: "
                f"products of messages reach at most l = 2*sh_max_l; raise sh_max_l or lower max_L."
            )

    @property
    def node_irreps(self) -> o3.Irreps:
        """Irreps of the node features after each interaction layer."""
        return natural_irreps(self.num_channels, self.max_L)

    @property
    def sh_irreps(self) -> o3.Irreps:
        """Irreps of the edge spherical harmonics, ``0e + 1o + ... + sh_max_l``."""
        return o3.Irreps.spherical_harmonics(self.sh_max_l)

"""Product (body-order) block: channel-wise tensor powers of the messages, MACE style."""

from typing import List, Tuple

import torch
from e3nn import o3
from torch import Tensor


def _unique_irreps(irreps: o3.Irreps) -> List[o3.Irrep]:
    seen: List[o3.Irrep] = []
    for _, ir in irreps:
        if ir not in seen:
            seen.append(ir)
    return sorted(seen)


def channelwise_product_paths(
    irreps_left: o3.Irreps, irreps_right: o3.Irreps, targets: List[o3.Irrep], same_inputs: bool
) -> List[Tuple[int, int, o3.Irrep]]:
    """Allowed ``(i_left, i_right, ir_out)`` couplings of a channel-wise (``uuu``) product.

    With ``same_inputs`` (the product ``A ⊗ A``), only ``i_left <= i_right`` is kept (the swapped
    path is the same function up to sign) and the paths that vanish identically (``l ⊗ l -> L``
    with the antisymmetric Clebsch-Gordan coefficients, i.e. odd ``2l - L``) are dropped.
    """
    paths: List[Tuple[int, int, o3.Irrep]] = []
    for i1, (_, ir1) in enumerate(irreps_left):
        for i2, (_, ir2) in enumerate(irreps_right):
            if same_inputs and i2 < i1:
                continue
            for ir_out in ir1 * ir2:
                if ir_out not in targets:
                    continue
                if same_inputs and i1 == i2 and (2 * ir1.l - ir_out.l) % 2 == 1:
                    continue
                paths.append((i1, i2, ir_out))
    return paths


class ChannelwiseProduct(torch.nn.Module):
    """One step ``P_k = W(x) · (P_{k-1} ⊗ A)`` of the product block, channel by channel.

    ``irreps_left``/``irreps_right`` must share one multiplicity ``C``; the output is
    ``C x targets``. The path weights (``weight_numel`` per node) are supplied by the caller.
    ``left``: ``(N, irreps_left.dim)``, ``right``: ``(N, irreps_right.dim)``,
    ``weights``: ``(N, weight_numel)`` -> ``(N, irreps_out.dim)``.
    """

    def __init__(
        self, irreps_left: o3.Irreps, irreps_right: o3.Irreps, targets: List[o3.Irrep], same_inputs: bool
    ) -> None:
        super().__init__()
        muls = {mul for mul, _ in irreps_left} | {mul for mul, _ in irreps_right}
        if len(muls) != 1:
            raise ValueError(
                f"ChannelwiseProduct needs one multiplicity for all inputs, got {irreps_left} and {irreps_right}."
            )
        mul = muls.pop()
        paths = channelwise_product_paths(irreps_left, irreps_right, targets, same_inputs)
        reached = _unique_irreps(o3.Irreps([(1, ir) for _, _, ir in paths])) if paths else []
        if not reached:
            raise ValueError(f"ChannelwiseProduct: no coupling of {irreps_left} with {irreps_right} reaches {targets}.")
        self.irreps_left = o3.Irreps(irreps_left)
        self.irreps_right = o3.Irreps(irreps_right)
        self.irreps_out = o3.Irreps([(mul, ir) for ir in reached])
        instructions = [(i1, i2, reached.index(ir), "uuu", True) for i1, i2, ir in paths]
        self.tp = o3.TensorProduct(
            self.irreps_left,
            self.irreps_right,
            self.irreps_out,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )
        self.weight_numel = int(self.tp.weight_numel)

    def forward(self, left: Tensor, right: Tensor, weights: Tensor) -> Tensor:
        return self.tp(left, right, weights)


class ProductStep(torch.nn.Module):
    """``P_k = (P_{k-1} ⊗ A)`` weighted by ``Linear(scalars of h)``, and its contribution ``Linear(P_k)``.

    The weights of the product are a linear function (with bias) of the receiver's invariant
    features ``h``: for one-hot or embedded species this is MACE's species-dependent product, and in
    later layers it makes it environment dependent.
    """

    def __init__(
        self,
        irreps_left: o3.Irreps,
        irreps_message: o3.Irreps,
        targets: List[o3.Irrep],
        irreps_weight_source: o3.Irreps,
        irreps_out: o3.Irreps,
        same_inputs: bool,
    ) -> None:
        super().__init__()
        self.product = ChannelwiseProduct(irreps_left, irreps_message, targets, same_inputs)
        self.irreps_product = self.product.irreps_out
        self.weights = o3.Linear(irreps_weight_source, o3.Irreps(f"{self.product.weight_numel}x0e"), biases=True)
        self.linear_out = o3.Linear(self.irreps_product, irreps_out)

    def forward(self, left: Tensor, message: Tensor, weight_source: Tensor) -> Tuple[Tensor, Tensor]:
        """Returns ``(P_k (N, irreps_product.dim), Linear(P_k) (N, irreps_out.dim))``."""
        product = self.product(left, message, self.weights(weight_source))
        return product, self.linear_out(product)


class ProductBlock(torch.nn.Module):
    """Body-order expansion of the aggregated messages ``A``:

    ``out = L_1(A) + sum_{k=2..correlation} L_k(P_k)`` with ``P_1 = A`` and
    ``P_k = W_k(h) · (P_{k-1} ⊗ A)`` (channel-wise). ``correlation = 2`` gives three-body features.

    ``message``: ``(N, irreps_in.dim)``; ``weight_source`` (receiver node features whose scalars set
    the product weights): ``(N, irreps_weight_source.dim)`` -> ``(N, irreps_out.dim)``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_weight_source: o3.Irreps,
        correlation: int,
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.irreps_weight_source = o3.Irreps(irreps_weight_source)
        if correlation < 1:
            raise ValueError(f"ProductBlock correlation={correlation}: expected an integer >= 1.")
        if self.irreps_weight_source.count("0e") == 0:
            raise ValueError(
                f"ProductBlock needs scalar (0e) features to set its weights; "
                f"irreps_weight_source={irreps_weight_source}."
            )
        self.correlation = int(correlation)
        self.linear_first = o3.Linear(self.irreps_in, self.irreps_out)
        targets_out = _unique_irreps(self.irreps_out)
        targets_mid = _unique_irreps(self.irreps_in)
        steps: List[ProductStep] = []
        left = self.irreps_in
        reached = set(ir for _, ir in self.irreps_in)
        for k in range(2, correlation + 1):
            targets = targets_out if k == correlation else targets_mid
            step = ProductStep(
                left, self.irreps_in, targets, self.irreps_weight_source, self.irreps_out, same_inputs=(k == 2)
            )
            steps.append(step)
            left = step.irreps_product
            reached |= set(ir for _, ir in left)
        missing = [str(ir) for _, ir in self.irreps_out if ir not in reached]
        if missing:
            raise ValueError(
                f"ProductBlock cannot produce {missing} of irreps_out={self.irreps_out} from messages {self.irreps_in} "
                f"with correlation={correlation}; raise sh_max_l or correlation, or drop these irreps."
            )
        self.steps = torch.nn.ModuleList(steps)

    def forward(self, message: Tensor, weight_source: Tensor) -> Tensor:
        out = self.linear_first(message)
        left = message
        for step in self.steps:
            left, contribution = step(left, message, weight_source)
            out = out + contribution
        return out

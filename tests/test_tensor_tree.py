"""split_differentiable finds every differentiable tensor in nested containers and rebuilds the
same structure (dataclasses, NamedTuples, lists, tuples, dicts) around replacements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from fpscf.tensor_tree import split_differentiable


class Pair(NamedTuple):
    a: torch.Tensor
    b: torch.Tensor | None


@dataclass
class Holder:
    pair: Pair
    items: list
    table: dict
    label: str


def test_split_and_rebuild_keeps_container_types_and_constants():
    x = torch.ones(2, requires_grad=True)
    y = torch.zeros(3, requires_grad=True)
    constant = torch.arange(4.0)
    tree = Holder(pair=Pair(x, None), items=[y, (constant, 2)], table={"z": x * 2}, label="geometry")
    leaves, rebuild = split_differentiable(tree)
    assert len(leaves) == 3 and all(t.requires_grad for t in leaves)
    rebuilt = rebuild([t.detach() + 1 for t in leaves])
    assert isinstance(rebuilt, Holder) and isinstance(rebuilt.pair, Pair)
    assert rebuilt.pair.b is None and rebuilt.label == "geometry"
    assert torch.equal(rebuilt.pair.a, x.detach() + 1)
    assert rebuilt.items[1][0] is constant and rebuilt.items[1][1] == 2
    assert torch.equal(rebuilt.table["z"], x.detach() * 2 + 1)

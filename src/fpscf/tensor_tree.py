"""Split the differentiable tensors out of nested containers and put replacements back.

The implicit fixed-point layer needs every tensor its map depends on as an explicit argument;
geometry objects are dataclasses holding many tensors. Containers: dataclasses, lists, tuples
(NamedTuples keep their type) and dicts; other leaves are kept as they are.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Sequence

import torch


def split_differentiable(tree: Any) -> tuple[list[torch.Tensor], Callable[[Sequence[torch.Tensor]], Any]]:
    """Tensors of ``tree`` that require grad (depth-first order) and a function that rebuilds the
    tree with those tensors replaced by the ones it is given (same order)."""
    found: list[torch.Tensor] = []
    _collect(tree, found)

    def rebuild(replacements: Sequence[torch.Tensor]) -> Any:
        if len(replacements) != len(found):
            raise ValueError(f"expected {len(found)} tensors, got {len(replacements)}")
        return _replace(tree, iter(replacements))

    return found, rebuild


def _collect(node: Any, found: list[torch.Tensor]) -> None:
    if isinstance(node, torch.Tensor):
        if node.requires_grad:
            found.append(node)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            _collect(getattr(node, f.name), found)
    elif isinstance(node, (list, tuple)):
        for item in node:
            _collect(item, found)
    elif isinstance(node, dict):
        for item in node.values():
            _collect(item, found)


def _replace(node: Any, replacements: Iterator[torch.Tensor]) -> Any:
    if isinstance(node, torch.Tensor):
        return next(replacements) if node.requires_grad else node
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {f.name: _replace(getattr(node, f.name), replacements) for f in dataclasses.fields(node)}
        return dataclasses.replace(node, **changes)
    if isinstance(node, list):
        return [_replace(item, replacements) for item in node]
    if isinstance(node, tuple):
        items = [_replace(item, replacements) for item in node]
        return type(node)(*items) if hasattr(node, "_fields") else tuple(items)  # NamedTuples keep their type
    if isinstance(node, dict):
        return {key: _replace(item, replacements) for key, item in node.items()}
    return node

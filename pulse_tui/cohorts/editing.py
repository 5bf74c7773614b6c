"""Editing a criteria tree in its JSON form by path (pure; the cohort editor's model).

A path is a tuple of indices from the root group: ``()`` is the root, ``(1, 0)`` is the first
node of the group that is the root's second node. Problems from :func:`criteria.validate` use
paths like ``conditions[1].conditions[0].value``; :func:`problem_path` turns them into tuples.
"""

from __future__ import annotations

import copy
import re
from typing import Any

Path = tuple[int, ...]
JSON = dict[str, Any]

_STEP = re.compile(r"conditions\[(\d+)\]")


def new_root() -> JSON:
    return {"type": "and", "conditions": []}


def is_group(node: JSON) -> bool:
    return isinstance(node, dict) and "conditions" in node


def node_at(root: JSON, path: Path) -> JSON:
    node = root
    for index in path:
        node = node["conditions"][index]
    return node


def group_path(root: JSON, path: Path) -> Path:
    """The path of the group that ``path`` is (or is in)."""
    return path if is_group(node_at(root, path)) else path[:-1]


def insert(root: JSON, path: Path, node: JSON) -> tuple[JSON, Path]:
    """Add ``node`` into the selected group (at its end), or after the selected condition.

    Returns the new tree and the new node's path; the input is not modified.
    """
    tree = copy.deepcopy(root)
    target = node_at(tree, path)
    if is_group(target):
        target["conditions"].append(node)
        return tree, (*path, len(target["conditions"]) - 1)
    parent = node_at(tree, path[:-1])
    index = path[-1] + 1
    parent["conditions"].insert(index, node)
    return tree, (*path[:-1], index)


def replace(root: JSON, path: Path, node: JSON) -> JSON:
    tree = copy.deepcopy(root)
    if not path:
        return copy.deepcopy(node)
    node_at(tree, path[:-1])["conditions"][path[-1]] = node
    return tree


def remove(root: JSON, path: Path) -> tuple[JSON, Path]:
    """Remove the node at ``path`` (not the root); returns the tree and where focus goes."""
    if not path:
        return copy.deepcopy(root), ()
    tree = copy.deepcopy(root)
    siblings = node_at(tree, path[:-1])["conditions"]
    del siblings[path[-1]]
    if not siblings:
        return tree, path[:-1]
    return tree, (*path[:-1], min(path[-1], len(siblings) - 1))


def move(root: JSON, path: Path, step: int) -> tuple[JSON, Path]:
    """Move the node up (-1) or down (+1) among its siblings."""
    if not path:
        return copy.deepcopy(root), path
    tree = copy.deepcopy(root)
    siblings = node_at(tree, path[:-1])["conditions"]
    index = path[-1]
    target = index + step
    if not 0 <= target < len(siblings):
        return tree, path
    siblings[index], siblings[target] = siblings[target], siblings[index]
    return tree, (*path[:-1], target)


def toggle_type(root: JSON, path: Path) -> JSON:
    """Switch and/or of the selected group (or of the group holding the selected condition)."""
    tree = copy.deepcopy(root)
    group = node_at(tree, group_path(tree, path))
    group["type"] = "or" if group.get("type") == "and" else "and"
    return tree


def problem_path(problem_path_text: str) -> tuple[Path, str]:
    """``conditions[1].conditions[0].value`` -> ((1, 0), "value"); field "" for the node."""
    indices = tuple(int(m) for m in _STEP.findall(problem_path_text))
    rest = _STEP.sub("", problem_path_text).strip(".")
    field = rest.split(".")[-1] if rest else ""
    return indices, field


def all_paths(root: JSON) -> list[Path]:
    """Every node's path in display order (depth first)."""
    out: list[Path] = [()]

    def walk(node: JSON, path: Path) -> None:
        for i, child in enumerate(node.get("conditions", [])):
            out.append((*path, i))
            if is_group(child):
                walk(child, (*path, i))

    walk(root, ())
    return out

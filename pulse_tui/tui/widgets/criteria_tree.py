"""A criteria tree edited with keys alone: add, edit, remove, move, nest, switch and/or.

Used by the cohort editor (every property) and the alert editor (event properties, as a filter).
The tree holds the criteria JSON; each change posts :class:`CriteriaTree.Changed`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from pulse_tui.cohorts import editing
from pulse_tui.cohorts.criteria import OPERATOR_SPECS, PROPERTIES, Problem, value_kind
from pulse_tui.cohorts.editing import JSON, Path
from pulse_tui.textsafe import visible
from pulse_tui.tui.guards import ReportsWorkerErrors
from pulse_tui.tui.screens.condition_form import ConditionFormScreen


def describe_condition(node: JSON) -> Text:
    """``country is one of "US", "CA"``: literal values, never markup."""
    prop = str(node.get("property", "?"))
    op = str(node.get("operator", "?"))
    spec = PROPERTIES.get(prop)
    text = Text()
    text.append(spec.label if spec else visible(prop), style="bold cyan")
    text.append(" ")
    text.append(OPERATOR_SPECS[op].label if op in OPERATOR_SPECS else visible(op),
                style="yellow")
    kind = value_kind(prop, op) if spec and op in OPERATOR_SPECS else "text"
    if kind == "none":
        return text
    value = node.get("value")
    values = value if isinstance(value, list) else [value]
    text.append(" ")
    for i, v in enumerate(values):
        if i:
            text.append(", ")
        text.append(f'"{visible(v)}"' if isinstance(v, str) else visible(v, none="(empty)"))
    return text


EMPTY_HINT = "empty: press a to add a condition"


def describe_group(node: JSON, *, root_label: str | None = None,
                   empty_hint: bool = True) -> Text:
    kind = node.get("type")
    text = Text()
    text.append("ALL of" if kind == "and" else "ANY of" if kind == "or" else visible(kind),
                style="bold magenta")
    text.append(f"  ({'and' if kind == 'and' else 'or'}"
                f"{', ' + root_label if root_label else ''})", style="dim")
    if empty_hint and not node.get("conditions"):
        text.append(f"  {EMPTY_HINT}", style="italic dim")
    return text


class CriteriaTree(ReportsWorkerErrors, Tree[Path]):
    """The tree view and editing keys of a criteria group."""

    BINDINGS = [
        Binding("a", "add_condition", "Add condition"),
        Binding("g", "add_group", "Add group"),
        Binding("e", "edit_node", "Edit", show=False),
        Binding("o", "toggle_type", "And/or"),
        Binding("x,delete", "remove_node", "Remove"),
        Binding("K", "move(-1)", "Move up"),
        Binding("J", "move(1)", "Move down"),
    ]

    @dataclass
    class Changed(Message):
        tree: CriteriaTree
        criteria: JSON

        @property
        def control(self) -> CriteriaTree:
            return self.tree

    def __init__(self, criteria: JSON, *, validator: Callable[[JSON], list[Problem]],
                 allowed_properties: tuple[str, ...] | None = None,
                 root_label: str = "criteria", id: str | None = None) -> None:
        super().__init__(Text(root_label), data=(), id=id)
        self.criteria = criteria
        self.validator = validator
        self.allowed = allowed_properties
        self.root_label = root_label
        self.cursor_path: Path = ()
        self.problems: dict[Path, list[tuple[str, str]]] = {}
        self.guide_depth = 3
        self.auto_expand = False

    def on_mount(self) -> None:
        self.rebuild()

    # ------------------------------------------------------------------ view
    def validate_now(self) -> list[Problem]:
        problems = self.validator(self.criteria)
        self.problems = {}
        for problem in problems:
            path, field = editing.problem_path(problem.path)
            self.problems.setdefault(path, []).append((field, problem.message))
        return problems

    def rebuild(self) -> None:
        """Redraw from the JSON, with each problem beside the node it belongs to."""
        self.validate_now()
        self.clear()
        self.root.set_label(self._label(self.criteria, ()))
        self.root.data = ()
        self._add_children(self.root, self.criteria, ())
        self.root.expand_all()
        target = self._node_for(self.root, self.cursor_path) or self.root
        self.call_after_refresh(self.move_cursor, target)

    def set_criteria(self, criteria: JSON, cursor: Path = ()) -> None:
        self.criteria = criteria
        self.cursor_path = cursor
        self.rebuild()
        self.post_message(self.Changed(self, criteria))

    def _label(self, node: JSON, path: Path) -> Text:
        problems = self.problems.get(path, [])
        # an empty group that may not be empty: one short warning, not the hint and the
        # validator's sentence side by side (cut at 80 columns)
        empty = (editing.is_group(node) and node.get("conditions") == []
                 and any(field == "conditions" for field, _ in problems))
        label = describe_group(node, root_label=None if path else self.root_label,
                               empty_hint=not empty) \
            if editing.is_group(node) else describe_condition(node)
        if empty:
            label.append(f"  ⚠ {EMPTY_HINT}", style="bold red")
            problems = [(field, message) for field, message in problems if field != "conditions"]
        for field, message in problems:
            label.append(f"   ⚠ {field + ': ' if field else ''}{message}", style="bold red")
        return label

    def _add_children(self, parent: TreeNode[Path], node: JSON, path: Path) -> None:
        for i, child in enumerate(node.get("conditions", [])):
            child_path = (*path, i)
            if editing.is_group(child):
                branch = parent.add(self._label(child, child_path), data=child_path,
                                    expand=True)
                self._add_children(branch, child, child_path)
            else:
                parent.add_leaf(self._label(child, child_path), data=child_path)

    def _node_for(self, node: TreeNode[Path], path: Path) -> TreeNode[Path] | None:
        if node.data == path:
            return node
        for child in node.children:
            found = self._node_for(child, path)
            if found is not None:
                return found
        return None

    def selected_path(self) -> Path:
        node = self.cursor_node
        return node.data if node is not None and node.data is not None else ()

    def problem_lines(self) -> list[str]:
        return [f"{'criteria' + ''.join(f' › {i + 1}' for i in path)}: {message}"
                for path, items in sorted(self.problems.items()) for _, message in items]

    # ------------------------------------------------------------------ editing
    @work(exclusive=True, group="criteria-condition-form", exit_on_error=False)
    async def action_add_condition(self) -> None:
        condition = await self.app.push_screen_wait(ConditionFormScreen(
            title="Add condition", allowed_properties=self.allowed))
        if condition is not None:
            self.set_criteria(*editing.insert(self.criteria, self.selected_path(), condition))

    def action_add_group(self) -> None:
        self.set_criteria(*editing.insert(self.criteria, self.selected_path(),
                                          {"type": "or", "conditions": []}))

    @on(Tree.NodeSelected)
    def _node_selected(self, message: Tree.NodeSelected) -> None:
        message.stop()
        self.action_edit_node()

    @work(exclusive=True, group="criteria-condition-form", exit_on_error=False)
    async def action_edit_node(self) -> None:
        path = self.selected_path()
        node: Any = editing.node_at(self.criteria, path)
        if editing.is_group(node):
            return
        condition = await self.app.push_screen_wait(ConditionFormScreen(
            node, title="Edit condition", allowed_properties=self.allowed))
        if condition is not None:
            self.set_criteria(editing.replace(self.criteria, path, condition), path)

    def action_toggle_type(self) -> None:
        path = self.selected_path()
        self.set_criteria(editing.toggle_type(self.criteria, path), path)

    def action_remove_node(self) -> None:
        if self.selected_path():
            self.set_criteria(*editing.remove(self.criteria, self.selected_path()))

    def action_move(self, step: int) -> None:
        self.set_criteria(*editing.move(self.criteria, self.selected_path(), step))

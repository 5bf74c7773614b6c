"""The cohort editor: name, criteria tree edited with keys alone, live member preview, JSON view."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input, Label, Static, TextArea

from pulse_tui.clock import format_ms
from pulse_tui.cohorts import editing
from pulse_tui.cohorts.criteria import MAX_DEPTH, Problem, group_depth, validate
from pulse_tui.cohorts.editing import JSON, Path
from pulse_tui.errors import ConflictError, NameTaken, PulseError, ValidationError
from pulse_tui.models import Cohort, Member
from pulse_tui.textsafe import visible
from pulse_tui.tui.forms import FieldChecks
from pulse_tui.tui.guards import ReportsWorkerErrors, WriteGuard, write_action, writes
from pulse_tui.tui.screens.confirm import ConfirmScreen
from pulse_tui.tui.widgets.criteria_tree import CriteriaTree
from pulse_tui.tui.widgets.field_error import FieldError
from pulse_tui.tui.widgets.footer import PulseFooter

PREVIEW_DELAY = 0.4  # seconds of quiet typing before the member count is recomputed


class CohortEditorScreen(WriteGuard, FieldChecks, ReportsWorkerErrors, Screen[bool]):
    """Edits one cohort (or a new one). Dismisses True when saved."""

    TITLE = "Cohort editor"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("escape", "close", "Back"),
        # one key, named for where it leads: the JSON view, or back to the tree from it
        Binding("ctrl+e", "show_json", "JSON view", priority=True),
        Binding("ctrl+e", "show_tree", "Tree view", priority=True),
    ]

    def __init__(self, *, site_id: str, cohort: Cohort | None = None,
                 static: bool = False) -> None:
        super().__init__()
        self.site_id = site_id
        self.cohort = cohort
        self.static = static or bool(cohort and cohort.kind == "static")
        if cohort is not None:
            try:
                self.criteria: JSON = json.loads(cohort.criteria_text)
            except (ValueError, TypeError, RecursionError):  # unusable: start from scratch
                self.criteria = editing.new_root()
            if (not isinstance(self.criteria, dict) or not editing.is_group(self.criteria)
                    or group_depth(self.criteria) > MAX_DEPTH):
                self.criteria = editing.new_root()
        else:
            self.criteria = editing.new_root()
        self.saved_state = self._state()
        self._preview_timer: Timer | None = None
        self.preview_count: int | None = None

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        title = ("New static cohort" if self.static else "New cohort") if self.cohort is None \
            else f"Cohort: {visible(self.cohort.name)}"
        head = Text(title, style="bold")
        head.append(f"   site {visible(self.site_id)}", style="dim")
        if self.static:
            head.append("   static (members from imports and the retention grid)",
                        style="yellow")
        yield Static(head, id="editor-title")
        with Horizontal(classes="form-row"):
            yield Label("Name", classes="form-label")
            yield Input(self.cohort.name if self.cohort else "", id="cohort-name",
                        placeholder="e.g. Signed-up users in North America", compact=True)
        yield FieldError(id="cohort-name-error")
        if self.static and self.cohort is None:
            with Horizontal(classes="form-row"):
                yield Label("Id", classes="form-label")
                yield Input(id="cohort-id", compact=True,
                            placeholder="optional: the cohort_id member imports will use")
        with Horizontal(classes="form-row"):
            yield Label("Description", classes="form-label")
            yield Input((self.cohort.description or "") if self.cohort else "",
                        id="cohort-description", placeholder="optional", compact=True)
        with Horizontal(id="editor-body"):
            with Vertical(id="criteria-pane"):
                yield Static(Text("Criteria", style="bold"), classes="section-title")
                yield CriteriaTree(self.criteria, validator=self._validator,
                                   id="criteria-tree")
                yield TextArea(id="criteria-json", language=None, soft_wrap=True,
                               show_line_numbers=False)
                yield FieldError(id="criteria-json-error")
            with VerticalScroll(id="preview-pane"):
                yield Static(Text("Preview", style="bold"), classes="section-title")
                yield Static("", id="preview-count")
                yield Static("", id="preview-problems", classes="problems")
                yield Static("", id="preview-sample")
        yield PulseFooter()

    def on_mount(self) -> None:
        self.query_one("#criteria-json", TextArea).display = False
        if self.static:
            self.tree.disabled = True
        self._show_problems()
        self.query_one("#cohort-name", Input).focus() if self.cohort is None else \
            self.tree.focus()
        self._schedule_preview()

    def field_checks(self) -> dict[str, Any]:
        return {"cohort-name": lambda text: None if text.strip() else
                "required: a name for the cohort"}

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_save()

    @property
    def tree(self) -> CriteriaTree:
        return self.query_one("#criteria-tree", CriteriaTree)

    @property
    def problems(self) -> dict[Path, list[tuple[str, str]]]:
        return self.tree.problems

    def _validator(self, criteria: JSON) -> list[Problem]:
        return [] if self.static else validate(criteria)

    # ------------------------------------------------------------------ state
    def _state(self) -> str:
        name = self.cohort.name if self.cohort else ""
        desc = (self.cohort.description or "") if self.cohort else ""
        if self.is_mounted:
            name = self.query_one("#cohort-name", Input).value
            desc = self.query_one("#cohort-description", Input).value
        return json.dumps([name, desc, self.criteria], sort_keys=True)

    @property
    def dirty(self) -> bool:
        return self._state() != self.saved_state

    def has_unsaved_changes(self) -> bool:
        return self.dirty

    def _show_problems(self) -> None:
        lines = self.tree.problem_lines()
        self.query_one("#preview-problems", Static).update(Text("\n".join(lines)))

    @on(CriteriaTree.Changed, "#criteria-tree")
    def _criteria_changed(self, message: CriteriaTree.Changed) -> None:
        self.criteria = message.criteria
        self._show_problems()
        self._schedule_preview()

    # ------------------------------------------------------------------ preview
    def _schedule_preview(self) -> None:
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(PREVIEW_DELAY, self._preview)

    @work(exclusive=True, group="cohort-preview", exit_on_error=False)
    async def _preview(self) -> None:
        count = self.query_one("#preview-count", Static)
        sample = self.query_one("#preview-sample", Static)
        store = self.app.store  # type: ignore[attr-defined]
        if self.static:
            if self.cohort is not None:
                cohort_id = self.cohort.cohort_id
                members = await store.read(
                    lambda d: d.events.cohort_members(cohort_id, limit=10))
                total = await store.read(lambda d: d.control.active_member_count(cohort_id))
                count.update(Text(f"{total:,} members (static)", style="bold"))
                sample.update(_sample_text(members))
            return
        if self.problems:
            self.preview_count = None
            count.update(Text("fix the criteria to see the member count", style="dim"))
            sample.update("")
            return
        count.update(Text("counting…", style="dim"))
        clock = self.app.clock  # type: ignore[attr-defined]
        site_id, criteria = self.site_id, self.criteria
        result = await store.read(lambda d: d.events.cohort_preview(clock, site_id, criteria))
        self.preview_count = result.count
        count.update(Text(f"{result.count:,} members would match", style="bold green"))
        sample.update(_sample_text(list(result.sample)))

    # ------------------------------------------------------------------ JSON view
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("show_json", "show_tree"):
            json_shown = self.is_mounted and self.query_one("#criteria-json", TextArea).display
            return (action == "show_tree") == bool(json_shown)
        return super().check_action(action, parameters)

    def action_show_json(self) -> None:
        self.action_toggle_json()

    def action_show_tree(self) -> None:
        self.action_toggle_json()

    def action_toggle_json(self) -> None:
        if self.static:
            return
        tree = self.tree
        area = self.query_one("#criteria-json", TextArea)
        error = self.query_one("#criteria-json-error", FieldError)
        if not area.display:
            area.text = json.dumps(self.criteria, indent=2, ensure_ascii=False)
            tree.display, area.display = False, True
            area.focus()
            self.refresh_bindings()
            return
        try:
            parsed = json.loads(area.text)
        except RecursionError:
            error.show(f"nested too deeply (groups nest at most {MAX_DEPTH} levels)")
            return
        except ValueError as exc:
            error.show(f"not valid JSON: {exc}")
            return
        if not isinstance(parsed, dict) or not editing.is_group(parsed):
            error.show('the criteria must be a group: {"type": "and", "conditions": [...]}')
            return
        if group_depth(parsed) > MAX_DEPTH:
            error.show(f"groups nest deeper than {MAX_DEPTH} levels")
            return
        error.show("")
        tree.display, area.display = True, False
        tree.focus()
        self.refresh_bindings()
        tree.set_criteria(parsed)

    # ------------------------------------------------------------------ save / close
    @writes("saving a cohort")
    @write_action("cohort-save")
    async def action_save(self) -> None:
        area = self.query_one("#criteria-json", TextArea)
        if area.display:
            self.action_toggle_json()
            if area.display:  # the JSON did not parse
                return
        name = self.query_one("#cohort-name", Input).value.strip()
        description = self.query_one("#cohort-description", Input).value.strip() or None
        if not name:
            self.query_one("#cohort-name-error", FieldError).show("a name is required")
            self.query_one("#cohort-name", Input).focus()
            return
        self.tree.validate_now()
        self._show_problems()
        if self.problems:
            self.notify("Not saved: fix the criteria marked ⚠ first.", severity="error")
            return
        store = self.app.store  # type: ignore[attr-defined]
        clock = self.app.clock  # type: ignore[attr-defined]
        site_id, criteria, static = self.site_id, self.criteria, self.static
        try:
            if self.cohort is None and self.static:
                chosen_id = self.query_one("#cohort-id", Input).value.strip() or None
                saved = await store.write(lambda d: d.control.create_cohort(
                    clock, site_id=site_id, name=name, kind="static", cohort_id=chosen_id,
                    description=description))
            elif self.cohort is None:
                saved = await store.write(lambda d: d.control.create_cohort(
                    clock, site_id=site_id, name=name, criteria=criteria,
                    description=description))
            else:
                cohort = self.cohort
                saved = await store.write(lambda d: d.control.update_cohort(
                    clock, cohort.cohort_id, expected_updated_at=cohort.updated_at, name=name,
                    description=description, criteria=None if static else criteria))
        except ValidationError as exc:
            for field, message in exc.errors.items():
                if field == "name":
                    self.query_one("#cohort-name-error", FieldError).show(message)
            self.notify(f"Not saved: {exc}", severity="error", timeout=8)
            return
        except ConflictError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        except NameTaken:
            self.notify("Not saved: a cohort with that id already exists.", severity="error",
                        timeout=8)
            return
        except PulseError as exc:
            self.notify(f"Not saved: {exc}", severity="error", timeout=8)
            return
        self.cohort = saved
        self.saved_state = self._state()
        self.notify(f"Saved {visible(saved.name)}; membership recomputed.")
        self.dismiss(True)

    @work(exclusive=True, group="cohort-close", exit_on_error=False)
    async def action_close(self) -> None:
        area = self.query_one("#criteria-json", TextArea)
        if self.dirty or area.display and area.text.strip() != json.dumps(
                self.criteria, indent=2, ensure_ascii=False):
            keep = not await self.app.push_screen_wait(ConfirmScreen(
                "Discard unsaved changes?", "Your edits to this cohort are not saved.",
                yes="discard"))
            if keep:
                return
        self.dismiss(False)


def _sample_text(members: list[Member]) -> Text:
    text = Text()
    if not members:
        return text
    text.append("sample (most recently seen)\n", style="dim")
    for m in members:
        text.append(visible(m.user_id, none="(no user id)"))
        text.append(f"  last seen {format_ms(m.last_seen_at, seconds=False)}\n", style="dim")
    return text

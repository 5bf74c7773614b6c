"""An operator's day at 80x24 (issue 16): footer keys, visible focus, the palette from anywhere,
empty states, table navigation, columns that keep what matters, dialogs, forms, plain consoles."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import FIXED_NOW_MS, async_wait_until
from hypothesis import given
from hypothesis import strategies as st
from textual.widgets import DataTable, Input, Select, Static

from pulse_tui.clock import Clock
from pulse_tui.config import Settings
from pulse_tui.models import NewEvent
from pulse_tui.simulate import write_batch
from pulse_tui.store import alerts as alerts_sql
from pulse_tui.store import cohorts as cohorts_sql
from pulse_tui.tui.app import make_app
from pulse_tui.tui.ascii import ASCII_TABLE, AsciiFilter, term_is_plain, to_ascii
from pulse_tui.tui.screens.alerts import AlertsScreen
from pulse_tui.tui.screens.charts import ChartsScreen
from pulse_tui.tui.screens.cohorts import CohortsScreen
from pulse_tui.tui.screens.detail import DetailScreen
from pulse_tui.tui.screens.help import HelpScreen
from pulse_tui.tui.screens.jobs import JobsScreen
from pulse_tui.tui.screens.live import LiveScreen
from pulse_tui.tui.screens.range_picker import RangePickerScreen
from pulse_tui.tui.screens.retention import RetentionScreen
from pulse_tui.tui.screens.target_picker import TargetPickerScreen
from pulse_tui.tui.screens.webhooks import WebhooksScreen
from pulse_tui.tui.widgets.columns import Column, FittedTable, distinct_labels, fit_columns
from pulse_tui.tui.widgets.footer import MORE, PulseFooter, fit_keys
from tests.tui.tui_helpers import event, insert_events, press_until, until

PANES = [("1", LiveScreen), ("2", ChartsScreen), ("3", CohortsScreen), ("4", RetentionScreen),
         ("5", AlertsScreen), ("6", JobsScreen)]
CLOCK = Clock(FIXED_NOW_MS)


@pytest.fixture
def seeded(pulse_settings: Settings, conn: sqlite3.Connection) -> Settings:
    """Events on two sites, three cohorts (two sharing a long prefix), two rules (one never
    evaluated, one with a six-digit threshold)."""
    events = [NewEvent(f"e{i}", "acme", "pageview", FIXED_NOW_MS - 60_000 + i, f"s{i}", f"u{i}",
                       url="https://acme.example/blog/launch" if i == 0 else None)
              for i in range(5)]
    events.append(NewEvent("e-shop", "shop", "signup", FIXED_NOW_MS - 1000, "s9", "u9"))
    write_batch(conn, events, FIXED_NOW_MS)
    for name in ("Alpha", "Signed up in North America last quarter",
                 "Signed up in North America this quarter"):
        cohorts_sql.create_cohort(conn, CLOCK, site_id="acme", name=name,
                                  criteria={"type": "and", "conditions": [
                                      {"property": "event_type", "operator": "equals",
                                       "value": "pageview"}]})
    alerts_sql.create_rule(conn, site_id="acme", name="Big traffic",
                           condition={"metric": "events", "window_minutes": 60,
                                      "comparison": "gt", "threshold": 100000},
                           now_ms=FIXED_NOW_MS)
    alerts_sql.create_rule(conn, site_id="acme", name="Quiet",
                           condition={"metric": "events", "window_minutes": 5,
                                      "comparison": "lt", "threshold": 1},
                           now_ms=FIXED_NOW_MS)
    return pulse_settings


def footer_keys(screen) -> list[tuple[str, str]]:
    from textual.widgets._footer import FooterKey, FooterLabel

    footer = screen.query_one(PulseFooter)
    out = []
    for child in footer.children:
        if isinstance(child, FooterKey):
            out.append((child.key_display, child.description))
        elif isinstance(child, FooterLabel):
            out.append(("", str(child.render())))
    return out


def cells(table: DataTable, row: int) -> dict[str, str]:
    keys = [str(k.value) for k in table.columns]
    return dict(zip(keys, (getattr(c, "plain", str(c)).strip() for c in table.get_row_at(row)),
                    strict=True))


# ---------------------------------------------------------------------------- item 2: footer
def test_fit_keys_keeps_room_for_the_more_marker() -> None:
    assert fit_keys([10, 10, 10], pinned=16, total=60) == 3
    shown = fit_keys([10, 10, 10, 10], pinned=16, total=50)
    assert shown == 2 and 2 * 10 + len(MORE) + 1 <= 50 - 16


async def test_footer_keeps_help_and_quit_at_80_columns_on_every_pane(seeded: Settings) -> None:
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        for key, pane in PANES:
            await press_until(pilot, pane, key)
            await until(pilot, lambda: footer_keys(app.screen))
            keys = footer_keys(app.screen)
            assert ("?", "Help") in keys and ("q", "Quit") in keys, (pane, keys)
            footer = app.screen.query_one(PulseFooter)
            # nothing drawn past the right edge: every key ends inside the 80 columns
            assert all(child.region.right <= 80 for child in footer.children), pane
            if footer.hidden_keys:
                assert ("", MORE) in keys, pane
        # a sub-view and an editor keep them too
        from pulse_tui.tui.screens.site_picker import SitePickerScreen

        await press_until(pilot, AlertsScreen, "5")
        await press_until(pilot, SitePickerScreen, "w")
        await press_until(pilot, WebhooksScreen, "down", "enter")
        await until(pilot, lambda: ("q", "Quit") in footer_keys(app.screen))


async def test_question_mark_opens_help_at_the_current_pane(seeded: Settings) -> None:
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await press_until(pilot, JobsScreen, "6")
        help_screen = await press_until(pilot, HelpScreen, "question_mark")
        assert help_screen.current_section == "Jobs"
        scroll = help_screen.query_one("#help")
        current = help_screen.query_one(".help-section.-current", Static)
        await until(pilot, lambda: scroll.scroll_y > 0)
        # the pane's section is at the top of the visible part
        assert current.region.y - scroll.region.y <= 2


# ---------------------------------------------------------------------------- item 1: focus
async def test_focus_is_visible_without_colour(seeded: Settings) -> None:
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LiveScreen))
        live = app.screen
        table = live.query_one("#live-table", DataTable)
        await until(pilot, lambda: app.focused is table)
        header = table.get_component_styles("datatable--header")
        assert "reverse" in str(header.text_style)
        await pilot.press("slash")
        text = live.query_one("#live-text", Input)
        await until(pilot, lambda: app.focused is text)
        assert text.styles.border_left[0] == "outer"  # a mark beside the field, not a shade
        assert "bold" in str(text.styles.text_style)
        header = table.get_component_styles("datatable--header")
        assert "reverse" not in str(header.text_style)
        await pilot.press("escape")
        await pilot.press("t")  # t focuses AND opens the type list
        select = live.query_one("#live-type", Select)
        await until(pilot, lambda: select.expanded)
        assert select.styles.border_left[0] == "outer"
        await pilot.press("escape")
        await press_until(pilot, ChartsScreen, "2")
        panel = app.screen.query_one("#panel-events")
        await until(pilot, lambda: panel.has_focus)
        assert panel.styles.border_top[0] == "double"
        other = app.screen.query_one("#panel-people")
        assert other.styles.border_top[0] != "double"


async def test_form_label_of_the_focused_field_is_reversed(seeded: Settings) -> None:
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await press_until(pilot, ChartsScreen, "2")
        picker = await press_until(pilot, RangePickerScreen, "c")
        labels = list(picker.query(".form-label"))
        await until(pilot, lambda: "reverse" in str(labels[0].styles.text_style))
        assert "reverse" not in str(labels[1].styles.text_style)


# ---------------------------------------------------------------------------- item 3: palette
async def test_palette_offers_every_pane_action_from_every_pane(seeded: Settings) -> None:
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        for key, pane in PANES:
            await press_until(pilot, pane, key)
            titles = [c.title for c in app.get_system_commands(app.screen)]
            for wanted in ("Alerts: Mute/unmute", "Jobs: Run export now", "Cohorts: Delete",
                           "Live events: Pause/resume", "Daily charts: Custom range",
                           "Retention: Recompute", "Jobs: Retry failed file"):
                assert wanted in titles, (pane, wanted)
            assert titles.count("Quit") == 1


async def test_palette_mute_from_jobs_asks_which_rule_and_mutes_it(seeded: Settings,
                                                                  db_path: Path) -> None:
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await press_until(pilot, JobsScreen, "6")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette")
        await pilot.press(*"mute")
        await pilot.pause(0.3)
        picker = await press_until(pilot, TargetPickerScreen, "enter")
        assert [label.split("  ")[0] for _, label in picker.choices] == ["Big traffic", "Quiet"]
        await pilot.press("down")
        await press_until(pilot, AlertsScreen, "enter")

        def muted() -> list[str]:
            with sqlite3.connect(db_path) as check:
                return [r[0] for r in check.execute(
                    "SELECT name FROM alert_rules WHERE status = 'muted'")]
        await async_wait_until(lambda: muted() == ["Quiet"], timeout=5)


# ---------------------------------------------------------------------------- item 8: empty
async def test_empty_database_says_what_to_do_in_every_pane(pulse_settings: Settings) -> None:
    app = make_app(pulse_settings, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LiveScreen))
        live = app.screen.query_one("#live-table", FittedTable.__mro__[1])
        await until(pilot, lambda: "no events yet" in live.empty_message)
        assert str(pulse_settings.import_dir / "events") in live.empty_message
        for key, pane, table_id, wanted in (
                ("3", CohortsScreen, "#cohorts-table", "no cohorts yet: n adds one"),
                ("5", AlertsScreen, "#rules-table", "no rules yet: n adds one"),
                ("6", JobsScreen, "#imports-table", "no imports yet"),
                ("6", JobsScreen, "#exports-table", "no exports yet: n adds one")):
            await press_until(pilot, pane, key)
            table = app.screen.query_one(table_id, FittedTable)
            await until(pilot, lambda table=table, wanted=wanted: wanted in table.empty_message)


async def test_live_filter_searches_the_database_and_says_when_nothing_matches(
        pulse_settings: Settings) -> None:
    from tests.tui.tui_helpers import init_db

    init_db(pulse_settings.db)
    # the matching event is older than the 1,000 the pane keeps in memory
    rows = [event(0, url="https://acme-web.example/blog/launch")]
    rows += [event(n, url=f"https://acme-web.example/p/{n}") for n in range(1, 1101)]
    insert_events(pulse_settings.db, rows)
    app = make_app(pulse_settings, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, LiveScreen))
        live = app.screen
        table = live.query_one("#live-table", DataTable)
        await until(pilot, lambda: len(live.kept) == 1000)
        assert not any(e.event_id == "evt-00000" for e in live.kept)
        await pilot.press("slash", *"blog/launch")
        await until(pilot, lambda: table.row_count == 1)
        assert live.shown[0].event_id == "evt-00000"
        await pilot.press(*"-nothing")
        await until(pilot, lambda: table.row_count == 0 and 'no events match "blog/launch-nothing"'
                    in live.query_one("#live-table").empty_message)


async def test_rule_never_evaluated_is_pending(seeded: Settings) -> None:
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await press_until(pilot, AlertsScreen, "5")
        table = screen.query_one("#rules-table", DataTable)
        await until(pilot, lambda: table.row_count == 2)
        assert [cells(table, r)["state"] for r in range(2)] == ["○ pending", "○ pending"]
        history = screen.query_one("#history-table", FittedTable)
        await until(pilot, lambda: "not evaluated yet: v evaluates it now"
                    in history.empty_message)


async def test_end_moves_the_cursor_so_copy_duplicates_the_last_cohort(seeded: Settings,
                                                                      db_path: Path) -> None:
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await press_until(pilot, CohortsScreen, "3")
        table = screen.query_one("#cohorts-table", DataTable)
        await until(pilot, lambda: table.row_count == 3)
        await pilot.press("end")
        await until(pilot, lambda: table.cursor_row == 2)
        await pilot.press("c")

        def names() -> list[str]:
            with sqlite3.connect(db_path) as check:
                return [r[0] for r in check.execute("SELECT name FROM cohorts ORDER BY name")]
        await async_wait_until(lambda: len(names()) == 4, timeout=5)
        assert sum("this quarter" in n for n in names()) == 2
        await pilot.press("home")
        await until(pilot, lambda: table.cursor_row == 0)
        await pilot.press("pagedown")
        await until(pilot, lambda: table.cursor_row == table.row_count - 1)


async def test_retention_with_all_sites_says_which_site(seeded: Settings) -> None:
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await press_until(pilot, RetentionScreen, "4")
        title = screen.query_one("#retention-title", Static)
        await until(pilot, lambda: "(s: site)" in str(title.render()))
        assert str(title.render()).startswith("acme")


# ---------------------------------------------------------------------------- item 4: columns
def test_descriptions_shrink_before_names_and_numbers() -> None:
    cols = [Column("state", "state", 11, keep=4), Column("name", "name", 14, keep=3, grow=True),
            Column("cond", "condition"), Column("value", "now / limit", 12, keep=5, grow=True),
            Column("at", "evaluated", 12, keep=1)]
    natural = {"name": 30, "value": 16, "cond": 60}
    wide = dict((c.key, w) for c, w in fit_columns(cols, 160, natural))
    assert wide["name"] == 30 and wide["value"] == 16 and wide["cond"] > 60
    narrow = dict((c.key, w) for c, w in fit_columns(cols, 80, natural))
    assert narrow["name"] == 30 and narrow["value"] == 16  # kept whole
    assert narrow["cond"] == 10 and narrow["at"] < 12   # shrunk first


async def test_alert_threshold_and_name_are_not_cut_at_80_columns(seeded: Settings) -> None:
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await press_until(pilot, AlertsScreen, "5")
        table = screen.query_one("#rules-table", DataTable)
        await until(pilot, lambda: table.row_count == 2)
        row = cells(table, 0)
        assert row["name"] == "Big traffic"
        assert row["value"].endswith("/ 100000") and "…" not in row["value"]
        # the whole row, hidden columns too, in a dialog
        detail = await press_until(pilot, DetailScreen, "i")
        assert ("notify", "log") in detail.fields
        assert any(name == "condition" and "100000" in value for name, value in detail.fields)


@given(st.lists(st.text(alphabet="ab ", min_size=0, max_size=30), min_size=1, max_size=8),
       st.integers(min_value=6, max_value=24))
def test_distinct_labels_never_read_the_same(names: list[str], width: int) -> None:
    shown = distinct_labels(names, width)
    assert all(len(label) <= width for label in shown)
    # different rows never read the same, even rows with the same name
    assert len(set(shown)) == len(shown)
    # a name that fits and is unique is shown as it is
    for name, label in zip(names, shown, strict=True):
        if len(name) <= width and names.count(name) == 1 and not any(
                other != name and other.startswith(name[:width - 1]) for other in names):
            assert label == name


async def test_two_cohorts_with_a_long_common_prefix_differ_in_the_retention_grid(
        seeded: Settings) -> None:
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await press_until(pilot, RetentionScreen, "4")
        table = screen.query_one("#retention-table", DataTable)
        await until(pilot, lambda: len(screen.rows) >= 3)
        labels = [table.get_row_at(r)[0].plain for r in range(table.row_count)]
        quarter = [label for label in labels if label.startswith("Signed")]
        assert len(quarter) == 2 and quarter[0] != quarter[1]


# ---------------------------------------------------------------------------- items 5, 6
async def test_export_file_path_is_in_a_dialog_not_a_toast(seeded: Settings,
                                                          conn: sqlite3.Connection) -> None:
    from pulse_tui.exports import create_export, run_export

    created = create_export(conn, CLOCK, site_id="acme", name="Daily numbers", type="metrics",
                            format="csv", filters={"days": 7}, scheduled={"frequency": "once"})
    result = run_export(conn, created.id, seeded, CLOCK)
    assert result.ok
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await press_until(pilot, JobsScreen, "6")
        table = screen.query_one("#exports-table", FittedTable)
        await until(pilot, lambda: table.row_count == 1)
        table.focus()
        detail = await press_until(pilot, DetailScreen, "o")
        assert ("latest file", str(result.file_path)) in detail.fields
        assert not app._notifications  # nothing covers the table
        assert str(result.file_path) in detail.text()


async def test_rejected_rows_show_line_column_value_and_reason_at_80(seeded: Settings,
                                                                    tmp_path: Path) -> None:
    from pulse_tui.ingest.importer import import_file
    from pulse_tui.store.connection import connect
    from pulse_tui.tui.screens.rejects import RejectsScreen

    csv = tmp_path / "events-bad.csv"
    csv.write_text("event_id,site_id,event_type,timestamp_ms,session_id\n"
                   "x1,acme,pageview,12345678901234567890,s1\n", encoding="utf-8")
    conn = connect(seeded.db)
    import_file(conn, csv, kind="events", clock=CLOCK, job_id="job-bad")
    conn.close()
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await press_until(pilot, JobsScreen, "6")
        table = screen.query_one("#imports-table", FittedTable)
        await until(pilot, lambda: table.row_count == 1)
        rejects = await press_until(pilot, RejectsScreen, "enter")
        grid = rejects.query_one(FittedTable)
        await until(pilot, lambda: grid.row_count == 1)
        assert [str(k.value) for k in grid.columns] == ["line", "column", "value", "reason"]
        row = cells(grid, 0)
        assert row["line"] == "2" and row["column"] == "timestamp_ms"
        detail = await press_until(pilot, DetailScreen, "enter")
        fields = dict(detail.fields)
        assert fields["value"] == "12345678901234567890" and len(fields["reason"]) > 10


# ---------------------------------------------------------------------------- item 7: forms
async def test_range_dialog_checks_each_field_as_it_is_left(seeded: Settings) -> None:
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await press_until(pilot, ChartsScreen, "2")
        picker = await press_until(pilot, RangePickerScreen, "c")
        start = picker.query_one("#range-from", Input)
        error = picker.query_one("#range-from-error")
        start.value = ""
        await pilot.press(*"2026-13-45")
        await pilot.press("tab")  # leaving the field checks it; the text stays
        await until(pilot, lambda: "not a day" in error.message)
        assert start.value == "2026-13-45"
        await pilot.press("shift+tab")
        await until(pilot, lambda: app.focused is start)
        await pilot.press("enter")  # enter in From with a bad day: stays, says why
        await pilot.pause()
        assert app.focused is start and "not a day" in error.message
        start.value = "2026-11-01"
        await until(pilot, lambda: error.message == "")  # cleared as soon as it is fixed
        await pilot.press("enter")  # now enter moves on to To
        end = picker.query_one("#range-to", Input)
        await until(pilot, lambda: app.focused is end)
        end.value = "2026-10-01"
        await pilot.press("enter")
        await until(pilot, lambda: "before From" in picker.query_one("#range-to-error").message)
        assert isinstance(app.screen, RangePickerScreen)
        end.value = "2026-11-20"
        await pilot.press("enter")
        await until(pilot, lambda: app.range_label == "2026-11-01..2026-11-20")


# ---------------------------------------------------------------------------- item 9
def test_plain_terminals_are_recognised() -> None:
    assert term_is_plain("linux") and term_is_plain("vt100") and term_is_plain("vt220")
    assert not term_is_plain("xterm-256color") and not term_is_plain("screen")
    assert not term_is_plain(None) and not term_is_plain("")


def test_ascii_table_keeps_widths_and_letters() -> None:
    from rich.cells import cell_len

    for code, out in ASCII_TABLE.items():
        assert out.isascii() and len(out) == max(1, cell_len(chr(code)))
    assert to_ascii("▲ FIRING ● ok ✖ error ⊘ ╭─╮│╰╯ ░▒▓█ ⠁⣿ …") == \
        "^ FIRING * ok x error / +-+|++ .:+# ** ~"
    assert to_ascii("café Zürich 東京") == "café Zürich 東京"


async def test_ascii_setting_draws_every_pane_in_ascii(seeded: Settings) -> None:
    from dataclasses import replace

    app = make_app(replace(seeded, ascii=True), clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert any(isinstance(f, AsciiFilter) for f in app._filters)
        for key, pane in PANES:
            await press_until(pilot, pane, key)
            await pilot.pause(0.2)
            svg = app.export_screenshot()
            drawn = "".join(ch for ch in svg if ord(ch) > 127 and ch != "\u00a0")
            assert not drawn, (pane, sorted(set(drawn)))


async def test_no_color_keeps_state_readable(seeded: Settings, monkeypatch) -> None:
    from textual.filter import Monochrome, NoColor

    from pulse_tui.tui.widgets.header import PulseHeader

    monkeypatch.setenv("NO_COLOR", "1")
    with sqlite3.connect(seeded.db) as conn:
        conn.execute("UPDATE alert_rules SET state = 'firing', last_evaluated_at = ?",
                     (FIXED_NOW_MS,))
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert any(isinstance(f, NoColor) for f in app._filters)
        assert not any(isinstance(f, Monochrome) for f in app._filters)
        await until(pilot, lambda: app.firing_alerts == 2)
        tabs = app.screen.query_one(PulseHeader).query_one("#header-tabs", Static)
        await until(pilot, lambda: "firing" in str(tabs.render()))
        text = tabs.render()
        firing = [span for span in text.spans if "firing" in text.plain[span.start:span.end]]
        assert firing and all(getattr(span.style, "reverse", False)
                              or "reverse" in str(span.style) for span in firing)


async def test_linux_console_gets_the_ascii_fallback_by_itself(seeded: Settings,
                                                               monkeypatch) -> None:
    monkeypatch.setenv("TERM", "linux")
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    assert app.ascii and any(isinstance(f, AsciiFilter) for f in app._filters)
    monkeypatch.setenv("TERM", "xterm-256color")
    app = make_app(seeded, clock=CLOCK, worker=False, watch_changes=False)
    assert not app.ascii


async def test_retention_view_without_rows_says_what_to_do(pulse_settings: Settings,
                                                           conn: sqlite3.Connection) -> None:
    write_batch(conn, [NewEvent("e1", "acme", "pageview", FIXED_NOW_MS - 1000, "s1", "u1")],
                FIXED_NOW_MS)
    app = make_app(pulse_settings, clock=CLOCK, worker=False, watch_changes=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await press_until(pilot, RetentionScreen, "4")
        table = screen.query_one("#retention-table", FittedTable.__mro__[1])
        await until(pilot, lambda: screen.grid is not None and table.row_count >= 1)
        await pilot.press("t", "t")  # the saved cohorts view: there are none
        await until(pilot, lambda: "no saved cohort on this site: 3 Cohorts, n adds one"
                    in table.empty_message)

"""Jobs pane with the embedded worker: imports appear live, rejected rows open, no message storm."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import async_wait_until
from textual.widgets import DataTable

from pulse_tui.config import Settings
from pulse_tui.tui.app import make_app
from pulse_tui.tui.messages import BackgroundWorkerEvent, DataChanged
from pulse_tui.tui.screens.jobs import JobsScreen
from pulse_tui.tui.screens.rejects import RejectsScreen
from tests.tui.tui_helpers import press_until

CSV = (
    "event_id,site_id,event_type,timestamp_ms,session_id,user_id,url\n"
    "e1,acme,pageview,1764000000000,s1,u1,https://a.example/\n"
    "e2,acme,pageview,1764000001000,s1,u1,[bold red]x[/]\n"
    "e3,acme,,1764000002000,s1,u1,https://a.example/missing-type\n"
    "e4,acme,signup,1764000003,s1,u1,https://a.example/seconds\n"
)


def test_forwarded_messages_do_not_bubble() -> None:
    # a pane's copy climbing back to the app would be forwarded again, forever
    assert DataChanged.bubble is False
    assert BackgroundWorkerEvent.bubble is False


async def test_dropped_file_is_imported_and_its_rejects_open(pulse_settings: Settings,
                                                             tmp_path: Path) -> None:
    app = make_app(pulse_settings, worker=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await press_until(pilot, JobsScreen, "6", timeout=5)
        screen = app.screen
        source = tmp_path / "drop.csv"
        source.write_text(CSV, encoding="utf-8")
        shutil.move(source, pulse_settings.import_dir / "events" / "drop.csv")
        table = screen.query_one("#imports-table", DataTable)

        def completed_row() -> bool:
            if table.row_count != 1:
                return False
            return table.get_row_at(0)[0].plain.strip() == "completed"

        await async_wait_until(completed_row, timeout=20)
        keys = [str(key.value) for key in table.columns]
        row = dict(zip(keys, (cell.plain.strip() for cell in table.get_row_at(0)), strict=True))
        assert row["file"] == "drop.csv"
        assert (row["ok"], row["dup"], row["bad"]) == ("2", "0", "2")
        table.focus()
        await press_until(pilot, RejectsScreen, "enter", timeout=5)
        rejects = app.screen.query_one(DataTable)
        await async_wait_until(
            lambda: "reason" in [str(key.value) for key in rejects.columns], timeout=5)
        reason_at = [str(key.value) for key in rejects.columns].index("reason")
        reasons = " ".join(
            rejects.get_row_at(i)[reason_at].plain for i in range(rejects.row_count))
        assert rejects.row_count == 2
        assert "seconds" in reasons
        await press_until(pilot, JobsScreen, "escape", timeout=5)
    assert (pulse_settings.import_dir / "processed" / "drop.csv").exists()

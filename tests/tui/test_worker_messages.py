"""Worker events reach the panes as one typed message each, mapped once in the bridge."""

from __future__ import annotations

import typing

from pulse_tui.tui import messages, worker_bridge
from pulse_tui.worker import events


def _event_types() -> list[type]:
    return [t for t in typing.get_args(events.WorkerEvent) if t is not events.WorkerState]


def test_every_worker_event_has_its_own_message_that_does_not_bubble() -> None:
    mapped = worker_bridge.MESSAGES
    assert set(mapped) == set(_event_types())
    assert len(set(mapped.values())) == len(mapped)  # one message class per event
    for message_class in mapped.values():
        assert issubclass(message_class, messages.BackgroundWorkerEvent)
        assert message_class.bubble is False


def test_the_bridge_wraps_each_event_in_its_message() -> None:
    finished = events.ImportFinished("j", "f.csv", "events", "s", "completed", 1, 0, 0, None, None)
    message = worker_bridge.message_for(finished)
    assert isinstance(message, messages.WorkerImportFinished) and message.event is finished
    state = worker_bridge.message_for(events.WorkerState("standby", "held by x"))
    assert isinstance(state, messages.BackgroundWorkerState) and state.detail == "held by x"


def test_progress_of_one_job_merges_and_of_two_jobs_does_not() -> None:
    def progress(job: str, rows: int) -> messages.WorkerImportCommitted:
        return messages.WorkerImportCommitted(events.ImportCommitted(job, "f", rows, 0, 10))

    assert progress("a", 2).can_replace(progress("a", 1))
    assert not progress("b", 2).can_replace(progress("a", 1))
    finished = events.ImportFinished("a", "f", "events", "s", "completed", 1, 0, 0, None, None)
    assert not progress("a", 2).can_replace(messages.WorkerImportFinished(finished))


def test_only_one_class_is_named_import_progress() -> None:
    from pulse_tui import ingest, worker

    assert not hasattr(events, "ImportProgress")
    assert worker.ImportProgress is events.ImportCommitted  # the old name, one class
    assert ingest.ImportProgress.__module__ == "pulse_tui.ingest.importer"


def test_no_private_attribute_of_textual_or_aiosqlite_is_read() -> None:
    import ast
    from pathlib import Path

    package = Path(messages.__file__).resolve().parents[1]
    private = {"_screen_stacks", "_execute", "_conn", "_current_mode", "_screen_stack"}
    offenders = [f"{p.relative_to(package)}:{n.lineno}" for p in package.rglob("*.py")
                 for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                 if isinstance(n, ast.Attribute) and n.attr in private]
    assert offenders == []

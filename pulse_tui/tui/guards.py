"""Guards for actions that write: one decorator, ``write_action``, that every write action uses.

A write action runs as a Textual worker that is never exclusive (cancelling it would not stop
the write already queued on the database thread, so an exclusive second key press would write
twice), one at a time per screen (a second press while the first runs is ignored), and its write
counts as a change even when it fails or is cancelled (``Store.write`` counts in ``finally``).
Reads keep their exclusive groups: a newer read makes the older one useless.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
_log = logging.getLogger("pulse_tui.tui")


def one_at_a_time(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T | None]]:
    """Wrap an async action so it never runs twice at once on the same object.

    Write actions must not be exclusive workers: cancelling the first one does not stop its
    write (it runs on the database thread), so a quick second ctrl+s would save twice.
    """
    flag = f"_running_{method.__name__}"

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> T | None:
        if getattr(self, flag, False):
            return None
        setattr(self, flag, True)
        try:
            return await method(self, *args, **kwargs)
        finally:
            setattr(self, flag, False)

    return wrapper


def write_action(group: str) -> Callable[[Callable[..., Awaitable[T]]], Callable[..., Any]]:
    """Decorate an async action that writes: ``@write_action("cohorts-write")``."""
    from textual import work

    def decorate(method: Callable[..., Awaitable[T]]) -> Callable[..., Any]:
        guarded = one_at_a_time(method)
        guarded.__pulse_write_action__ = True  # type: ignore[attr-defined]
        return work(guarded, exclusive=False, group=group, exit_on_error=False)

    return decorate


class ReportsWorkerErrors:
    """Mixin for anything that runs workers: a failed worker is logged with its traceback and
    told to the operator in one line, instead of ending the app or failing silently."""

    def on_worker_state_changed(self, event: Any) -> None:
        from textual.worker import WorkerState

        if event.state is WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            where = getattr(self, "TITLE", "") or type(self).__name__
            _log.error("%s: %s failed", where, event.worker.name, exc_info=error)
            self.notify(f"{where}: {error}", severity="error", timeout=8)  # type: ignore[attr-defined]

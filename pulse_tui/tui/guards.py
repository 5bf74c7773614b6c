"""Guards for actions that write: one decorator, ``write_action``, that every write action uses,
and the read-only marks (``writes``) that hide and refuse them in a read-only app.

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


# ---------------------------------------------------------------------------- read-only sessions
READ_ONLY_REFUSAL = ("Read-only session: {what} would change data, so it is turned off here "
                     "(pulse-tui --read-only / serve --read-only).")
_WRITES_MARK = "__pulse_writes__"

F = TypeVar("F", bound=Callable[..., Any])


def writes(what: str) -> Callable[[F], F]:
    """Declare an action that changes data (``what`` names it for the refusal message).

    In a read-only app (``app.read_only``) such an action is hidden from the footer and the
    command palette (:class:`WriteGuard`), refused with a message when a key or the palette
    reaches it anyway (``PulseApp.run_action``), and the Store refuses the write itself.
    Put it above ``@work`` so the mark sits on the method the action system finds.
    """

    def mark(method: F) -> F:
        setattr(method, _WRITES_MARK, what)
        return method

    return mark


def declared_write(node: object, action: str) -> str | None:
    """What the action named ``action`` on ``node`` changes, or None when it only reads."""
    name = action.split("(", 1)[0].strip()
    method = getattr(node, f"action_{name}", None)
    return getattr(method, _WRITES_MARK, None)


def refusal(what: str) -> str:
    return READ_ONLY_REFUSAL.format(what=what)


class WriteGuard:
    """Mixin for screens with write actions: in a read-only app they are not offered (Textual
    leaves a binding whose check_action is False out of the footer)."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if getattr(self.app, "read_only", False) and declared_write(self, action):  # type: ignore[attr-defined]
            return False
        return super().check_action(action, parameters)  # type: ignore[misc]

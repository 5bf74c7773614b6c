"""Text from the data is literal everywhere, notifications included."""

from __future__ import annotations

from pulse_tui.config import Settings
from pulse_tui.tui.app import make_app


async def test_notifications_never_interpret_markup(pulse_settings: Settings) -> None:
    app = make_app(pulse_settings, worker=False)
    async with app.run_test(size=(80, 24)) as pilot:
        app.screen.notify("Duplicated as [bold red]x[/] (copy)")
        for _ in range(100):  # the app handles the Notify message on its next turns
            await pilot.pause(0.05)
            if len(app._notifications):  # noqa: SLF001
                break
        note = next(iter(app._notifications))  # noqa: SLF001
        # the toast renders the message as markup only when this flag is set
        assert note.markup is False
        assert note.message == "Duplicated as [bold red]x[/] (copy)"

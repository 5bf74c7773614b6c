"""``pulse-tui simulate``: realistic synthetic events written at a steady rate until stopped."""

from __future__ import annotations

import math
import signal
import threading
import time
from typing import Any

import click

from pulse_tui.cli.common import pulse_command, settings_from
from pulse_tui.config import redact_url

# simulate's bounds: a rate beyond this is a typo (1e12 once grew to 7 GB before writing),
# and each transaction writes at most SIMULATE_CHUNK events so SIGTERM is seen promptly
SIMULATE_MAX_RATE = 100_000.0
SIMULATE_CHUNK = 5_000


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses nan (click's range checks let it through)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


@pulse_command("simulate")
@click.option("--rate", type=FiniteFloat(min=0.1, max=SIMULATE_MAX_RATE), required=True,
              help=f"Events per second (0.1 to {SIMULATE_MAX_RATE:,.0f}).")
@click.option("--duration", type=FiniteFloat(min=0), default=None,
              help="Seconds to run (default: until interrupted).")
@click.option("--sites", type=click.IntRange(1, 4), default=3, show_default=True,
              help="Number of sites to spread traffic over.")
@click.option("--seed", type=int, default=None, help="Random seed (default: time-based).")
@click.pass_context
def simulate_cmd(ctx: click.Context, rate: float, duration: float | None, sites: int,
                 seed: int | None) -> None:
    """Write realistic synthetic events into the database (demo, load tests).

    SIGTERM or SIGINT stop it within a second, keeping what was written.
    """
    from pulse_tui.backend.wiring import open_backends
    from pulse_tui.simulate import Simulator, write_batch, write_sites, write_users
    from pulse_tui.store.tx import write_transaction

    settings = settings_from(ctx)
    stop = _stop_on_signals()
    backends = open_backends(settings.db, settings.events_store,
                             cluster=settings.clickhouse_cluster)  # events: SQLite or ClickHouse
    conn = backends.conn
    sim = Simulator(seed=seed if seed is not None else time.time_ns() % 1_000_000, sites=sites)
    start = time.monotonic()
    written = 0
    tick = 0.2 if rate >= 5 else 1.0
    carry = 0.0
    try:
        with write_transaction(conn):
            write_sites(backends, sim, int(time.time() * 1000))
        where = (str(settings.db) if settings.events_store == "sqlite"
                 else f"{redact_url(settings.events_store)} (control data: {settings.db})")
        click.echo(f"simulating {rate:g} events/s into {where} (ctrl+c to stop)", err=True)
        next_at = start
        while not stop["now"]:
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                break
            # what falls behind is dropped, not piled up: at most one tick's worth per turn
            carry = min(carry + rate * tick, rate * tick + 1)
            count = int(carry)
            carry -= count
            while count and not stop["now"]:
                n = min(count, SIMULATE_CHUNK)
                count -= n
                now_ms = int(time.time() * 1000)
                written += write_batch(backends, sim.live(now_ms, n), now_ms)
            next_at = max(next_at + tick, time.monotonic() - tick)
            stop["event"].wait(max(0.0, next_at - time.monotonic()))
        users = sim.users()
        if users:
            with write_transaction(conn):
                write_users(backends, users, int(time.time() * 1000))
    finally:
        backends.close()
    click.echo(f"wrote {written} events in {time.monotonic() - start:.1f}s", err=True)


def _stop_on_signals() -> dict[str, Any]:
    """SIGINT/SIGTERM set ``flag["now"]`` and the ``flag["event"]`` a loop may wait on."""
    event = threading.Event()
    flag: dict[str, Any] = {"now": False, "event": event}

    def handler(signum: int, frame: object) -> None:
        flag["now"] = True
        event.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return flag

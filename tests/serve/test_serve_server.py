"""``pulse-tui serve`` as a real process on loopback: the token guards every request and the
websocket before any app starts, the session limit holds, and a stop leaves nothing running."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest
from conftest import async_wait_until, wait_until

from pulse_tui.config import Settings
from tests.serve.serve_helpers import (
    children_of,
    free_port,
    running_serve,
    serve_argv,
    write_config,
)

pytestmark = pytest.mark.slow

TOKEN = "tok-0123456789-abcdef"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _status(url: str, **kwargs) -> int:
    async with aiohttp.ClientSession() as http, http.get(url, allow_redirects=False,
                                                         **kwargs) as response:
        return response.status


async def _ws_status(url: str, **kwargs) -> int:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(url, **kwargs):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_no_or_wrong_token_gets_401_and_starts_no_app(pulse_settings: Settings) -> None:
    with running_serve(pulse_settings, "--token", TOKEN) as served:
        base, ws = served.base, f"ws://127.0.0.1:{served.port}/ws?width=80&height=24"
        assert await _status(f"{base}/") == 401
        assert await _status(f"{base}/?token=wrong") == 401
        assert await _status(f"{base}/", headers=_bearer("wrong")) == 401
        assert await _status(f"{base}/static/js/textual.js") == 401
        assert await _ws_status(ws) == 401
        assert await _ws_status(f"{ws}&token=wrong") == 401
        assert await _ws_status(ws, headers=_bearer("wrong")) == 401
        cookie = f"pulse_token_{served.port}"
        assert await _ws_status(ws, headers={"Cookie": f"{cookie}=wrong"}) == 401
        assert children_of(served.proc.pid) == []  # no app process was started
        # the right token, three ways
        assert await _status(f"{base}/", headers=_bearer(TOKEN)) == 200
        assert await _status(f"{base}/", headers={"Cookie": f"{cookie}={TOKEN}"}) == 200
        assert await _status(f"{base}/", headers={"Cookie": f"pulse_token_1={TOKEN}"}) == 401
        assert await _status(f"{base}/?token={TOKEN}") == 303  # traded for a cookie
    log_text = pulse_settings.log_file.read_text(encoding="utf-8")
    assert "refused GET / from 127.0.0.1: no token" in log_text
    assert TOKEN not in log_text and "wrong" not in log_text.replace("wrong token", "")


def test_non_loopback_host_without_token_exits_2_before_binding(
        pulse_settings: Settings) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PULSE_SERVE_TOKEN"}
    done = subprocess.run(serve_argv(pulse_settings, "--host", "0.0.0.0", "--port", str(port)),
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert "needs a token" in done.stderr and "Traceback" not in done.stderr
    assert "serving" not in done.stdout.lower()
    with socket.socket() as probe:  # nothing took the port
        probe.bind(("0.0.0.0", port))
    assert not pulse_settings.db.exists()  # it stopped before touching anything


async def test_token_from_config_and_env_and_generated(pulse_settings: Settings) -> None:
    write_config(pulse_settings, serve_token="from-config-token")
    with running_serve(pulse_settings) as served:
        assert await _status(f"{served.base}/", headers=_bearer("from-config-token")) == 200
        assert "from-config-token" not in served.output()
    with running_serve(pulse_settings, env={"PULSE_SERVE_TOKEN": "from-env-token"}) as served:
        assert await _status(f"{served.base}/", headers=_bearer("from-env-token")) == 200
        assert await _status(f"{served.base}/", headers=_bearer("from-config-token")) == 401
    write_config(pulse_settings)
    with running_serve(pulse_settings) as served:
        printed = re.search(r"\?token=(\S+)", served.output())
        assert printed, served.output()
        assert await _status(f"{served.base}/") == 401
        assert await _status(f"{served.base}/", headers=_bearer(printed[1])) == 200
    assert printed[1] not in pulse_settings.log_file.read_text(encoding="utf-8")


async def test_max_sessions_holds_and_the_next_one_is_told(pulse_settings: Settings) -> None:
    with running_serve(pulse_settings, "--token", TOKEN, "--max-sessions", "1") as served:
        ws_url = f"ws://127.0.0.1:{served.port}/ws?width=80&height=24"
        async with aiohttp.ClientSession(headers=_bearer(TOKEN)) as http:
            first = await http.ws_connect(ws_url)
            await async_wait_until(lambda: children_of(served.proc.pid), timeout=30)
            async with http.get(f"{served.base}/") as page:
                assert page.status == 503
                assert "limit of 1 browser session" in await page.text()
            second = await http.ws_connect(ws_url)
            message = await asyncio.wait_for(second.receive(), 10)
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert second.close_code == 1013
            assert "limit of 1 browser session" in message.extra
            assert len(_app_processes(served.proc.pid)) == 1
            await first.close()
            await async_wait_until(lambda: not children_of(served.proc.pid), timeout=30)
            # a place is free again once the session is closed
            await async_wait_until(lambda: "session 1 closed" in pulse_settings.log_file
                                   .read_text(encoding="utf-8"), timeout=30)
            async with http.get(f"{served.base}/") as page:
                assert page.status == 200
    log_text = pulse_settings.log_file.read_text(encoding="utf-8")
    assert "refused a session from 127.0.0.1: 1 of 1 open" in log_text


def _app_processes(pid: int) -> list[int]:
    return [child for child in children_of(pid)
            if "pulse_tui" in _cmdline(child) and "serve" not in _cmdline(child).split()]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl+c"])
async def test_stop_ends_every_session_and_leaves_no_process(pulse_settings: Settings,
                                                             sig: int) -> None:
    with running_serve(pulse_settings, "--token", TOKEN) as served:
        ws_url = f"ws://127.0.0.1:{served.port}/ws?width=80&height=24"
        async with aiohttp.ClientSession(headers=_bearer(TOKEN)) as http:
            sockets = [await http.ws_connect(ws_url) for _ in range(2)]
            apps = await async_wait_until(
                lambda: len(_app_processes(served.proc.pid)) == 2
                and _app_processes(served.proc.pid), timeout=30)
            # the apps are up (they draw) before the stop
            for ws in sockets:
                message = await asyncio.wait_for(ws.receive(), 30)
                assert message.type == aiohttp.WSMsgType.BINARY
            assert served.stop(sig, timeout=30) == 0
            assert not [pid for pid in apps if _alive(pid)]
            for ws in sockets:
                while (await asyncio.wait_for(ws.receive(), 10)).type not in (
                        aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.CLOSING):
                    pass
    wait_until(lambda: "stopped" in pulse_settings.log_file.read_text(encoding="utf-8"))


@pytest.mark.parametrize("flags,expect,refuse", [
    ((), {"--no-worker"}, {"--read-only"}),
    (("--read-only", "--worker"), {"--read-only"}, {"--no-worker"}),
], ids=["default", "read-only-with-worker"])
async def test_sessions_run_the_same_app_with_the_serve_flags(
        pulse_settings: Settings, flags: tuple[str, ...], expect: set[str],
        refuse: set[str]) -> None:
    with running_serve(pulse_settings, "--token", TOKEN, *flags) as served:
        ws_url = f"ws://127.0.0.1:{served.port}/ws?width=80&height=24"
        async with aiohttp.ClientSession(headers=_bearer(TOKEN)) as http:
            ws = await http.ws_connect(ws_url)
            apps = await async_wait_until(lambda: _app_processes(served.proc.pid), timeout=30)
            argv = set(_cmdline(apps[0]).split())
            assert {"--db", str(pulse_settings.db.resolve()), "--config"} <= argv
            assert expect <= argv and not (refuse & argv)
            assert TOKEN not in _cmdline(apps[0])
            with open(f"/proc/{apps[0]}/environ", "rb") as f:
                assert b"PULSE_SERVE_TOKEN" not in f.read()
            await ws.close()


async def test_apps_do_not_outlive_a_killed_server(pulse_settings: Settings) -> None:
    with running_serve(pulse_settings, "--token", TOKEN) as served:
        ws_url = f"ws://127.0.0.1:{served.port}/ws?width=80&height=24"
        async with aiohttp.ClientSession(headers=_bearer(TOKEN)) as http:
            ws = await http.ws_connect(ws_url)
            apps = await async_wait_until(lambda: _app_processes(served.proc.pid), timeout=30)
            assert (await asyncio.wait_for(ws.receive(), 30)).type == aiohttp.WSMsgType.BINARY
            served.stop(signal.SIGKILL)
            await async_wait_until(lambda: not [pid for pid in apps if _alive(pid)],
                                   timeout=15)


def test_a_taken_port_is_one_clear_line(pulse_settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(serve_argv(pulse_settings, "--port", str(port), "--token", TOKEN),
                               capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"pulse-tui: cannot listen on 127.0.0.1:{port}: "
                                   "address already in use")


def test_a_file_that_needs_upgrading_is_refused_untouched(tmp_path, monkeypatch) -> None:
    from pulse_tui.config import Settings as _Settings

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "unit"))
    from test_adoption import file_state, make_seed_only  # the seed's own DDL

    folder = tmp_path / "db"
    folder.mkdir()
    settings = _Settings(db=folder / "pulse.db", import_dir=tmp_path / "import",
                         export_dir=tmp_path / "exports", log_file=tmp_path / "pulse-tui.log")
    make_seed_only(settings.db)
    write_config(settings)
    before = file_state(settings.db)
    done = subprocess.run(serve_argv(settings, "--port", str(free_port()), "--token", TOKEN),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "pulse-tui migrate" in done.stderr and "Traceback" not in done.stderr
    assert file_state(settings.db) == before

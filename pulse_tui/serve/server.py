"""The web server behind ``pulse-tui serve``: textual-serve, guarded and cleaned up after.

textual-serve's Server with a token check on every request (before any app process starts), a
session limit, sessions logged, and a clean stop that leaves no app process behind. Each browser
session runs its own ``pulse-tui`` process (Textual's web driver) on the shared database; this
module never imports Textual.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import itertools
import logging
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from pulse_tui.errors import PulseError

log = logging.getLogger("pulse_tui.serve")

TOKEN_COOKIE = "pulse_token_{port}"  # cookies ignore ports: two servers on one host differ
TOKEN_ENV = "PULSE_SERVE_TOKEN"
QUIT_GRACE_SECONDS = 5.0
TEMPLATES = Path(__file__).resolve().parent / "templates"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (localhost, 127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison (a wrong guess takes as long as a right one)."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


@dataclass
class ServeOptions:
    """What ``pulse-tui serve`` was asked for; ``app_command`` starts one session's app."""

    app_command: Sequence[str]
    token: str
    host: str = "127.0.0.1"
    port: int = 8377
    max_sessions: int = 8
    title: str = "PULSE"
    env_drop: tuple[str, ...] = (TOKEN_ENV,)
    on_ready: Callable[[str], None] | None = field(default=None, repr=False)


class QuietAccessLogger(AbstractAccessLogger):
    """One line per request at debug level, without the query string (it may hold the token)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug("%s %s %s %.3fs", request.method, request.path, response.status, time)


class SessionProcess(AppService):
    """One browser session's app: started without a shell, stopped for sure (quit, then
    terminate, then kill), so no process outlives the server."""

    def __init__(self, argv: Sequence[str], env_drop: Sequence[str], **kwargs: Any) -> None:
        super().__init__(" ".join(argv), **kwargs)
        self.argv = list(argv)
        self.env_drop = tuple(env_drop)

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        environment = super()._build_environment(width, height)
        for name in self.env_drop:
            environment.pop(name, None)
        return environment

    async def _open_app_process(self, width: int = 80, height: int = 24
                                ) -> asyncio.subprocess.Process:
        environment = self._build_environment(width=width, height=height)
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
            # ctrl+c in the server's terminal reaches the server only; it ends the sessions
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def shut_down(self) -> None:
        """Ask the app to quit; terminate it, then kill it, if it does not."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(Exception):
            await self._download_manager.cancel_app_downloads(app_service_id=self.app_service_id)
        if process.returncode is None:
            with contextlib.suppress(Exception):
                await self.send_meta({"type": "quit"})
            for step in (None, process.terminate, process.kill):
                if step is not None:
                    with contextlib.suppress(ProcessLookupError):
                        step()
                try:
                    await asyncio.wait_for(process.wait(), QUIT_GRACE_SECONDS)
                    break
                except TimeoutError:
                    continue
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, QUIT_GRACE_SECONDS)
            self._task = None


class PulseServer(Server):
    """textual-serve's Server, made safe to expose: see the module docstring."""

    def __init__(self, options: ServeOptions) -> None:
        if not options.token:
            raise ValueError("pulse-tui serve always has a token")
        super().__init__(" ".join(options.app_command), host=options.host, port=options.port,
                         title=options.title, templates_path=TEMPLATES)
        self.options = options
        self.sessions: dict[int, SessionProcess] = {}
        self._session_ids = itertools.count(1)
        self._stopping = False

    # ------------------------------------------------------------------ the aiohttp app
    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.insert(0, self._check_token)
        return app

    def _presented_token(self, request: web.Request) -> tuple[str | None, bool]:
        """The token a request carries and whether it came in the URL (then a cookie is set)."""
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip(), False
        if "token" in request.query:
            return request.query["token"], True
        return request.cookies.get(self.cookie_name), False

    @property
    def cookie_name(self) -> str:
        return TOKEN_COOKIE.format(port=self.options.port)

    @web.middleware
    async def _check_token(self, request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
        """Every request, the websocket included, shows the token before anything runs."""
        token = self.options.token
        given, in_url = self._presented_token(request)
        if not token_matches(given, token):
            log.warning("refused %s %s from %s: %s token", request.method, request.path,
                        _client(request), "wrong" if given else "no")
            return web.Response(status=401, text="401: this PULSE console needs its token "
                                "(open the URL printed by pulse-tui serve).\n",
                                headers={"WWW-Authenticate": 'Bearer realm="pulse-tui"'})
        if in_url and request.method == "GET" and request.path != "/ws":
            # keep the token out of the address bar and history: a cookie from now on
            query = {k: v for k, v in request.query.items() if k != "token"}
            target = request.path + (f"?{urlencode(query)}" if query else "")
            response = web.HTTPSeeOther(target)
            response.set_cookie(self.cookie_name, token, httponly=True, samesite="Strict",
                                secure=_is_https(request), path="/")
            return response
        if request.path == "/ws" and not self._same_origin(request):
            log.warning("refused a websocket from another site (%s)",
                        request.headers.get("Origin"))
            return web.Response(status=403, text="403: websocket from another site\n")
        response = await handler(request)
        if not response.prepared:
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if not origin:
            return True  # not a browser (scripts with a bearer token)
        host = origin.split("://", 1)[-1].rstrip("/")
        return host.lower() == (request.host or "").lower()

    # ------------------------------------------------------------------ pages
    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        if len(self.sessions) >= self.options.max_sessions:
            return web.Response(status=503, content_type="text/html",
                                text=_busy_page(self.options.max_sessions))
        https = _is_https(request)
        context = {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            # where the browser reached us (a reverse proxy's https and host included)
            "app_websocket_url": f"{'wss' if https else 'ws'}://{request.host}/ws",
            "config": {"static": {"url": "/static/"}},
            "application": {"name": self.title},
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        websocket = web.WebSocketResponse(heartbeat=15)
        await websocket.prepare(request)
        limit = self.options.max_sessions
        if self._stopping or len(self.sessions) >= limit:
            log.warning("refused a session from %s: %d of %d open", _client(request),
                        len(self.sessions), limit)
            await websocket.close(code=1013, message=_busy_reason(limit).encode("utf-8"))
            return websocket
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)
        number = next(self._session_ids)
        session = SessionProcess(self.options.app_command, self.options.env_drop,
                                 write_bytes=websocket.send_bytes,
                                 write_str=websocket.send_str, close=websocket.close,
                                 download_manager=self.download_manager, debug=self.debug)
        self.sessions[number] = session
        try:
            await session.start(width, height)
            log.info("session %d opened from %s (pid %s; %d of %d open)", number,
                     _client(request), session.pid, len(self.sessions), limit)
            await self._process_messages(websocket, session)
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - one session failing must not stop the server
            log.exception("session %d failed", number)
        finally:
            await session.shut_down()
            with contextlib.suppress(Exception):
                await websocket.close()
            del self.sessions[number]
            log.info("session %d closed (%d of %d open)", number, len(self.sessions), limit)
        return websocket

    async def _process_messages(self, websocket: web.WebSocketResponse,
                                app_service: AppService) -> None:
        try:
            await super()._process_messages(websocket, app_service)
        except (ValueError, AssertionError, KeyError, TypeError):
            log.warning("a browser sent a message that is not textual-serve's; session ended")

    # ------------------------------------------------------------------ running
    def initialize_logging(self) -> None:
        """The CLI has set up PULSE's log file already."""

    async def on_startup(self, app: web.Application) -> None:
        """textual-serve prints a banner here; the command prints the URL itself."""

    async def run(self) -> None:
        """Listen until SIGTERM or SIGINT, then end every session and stop."""
        app = await self._make_app()
        runner = web.AppRunner(app, handle_signals=False, access_log_class=QuietAccessLogger,
                               access_log=logging.getLogger("pulse_tui.serve.access"),
                               shutdown_timeout=QUIT_GRACE_SECONDS)
        await runner.setup()
        site = web.TCPSite(runner, self.options.host, self.options.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise PulseError(f"cannot listen on {self.options.host}:{self.options.port}: "
                             f"{reason.lower()}") from exc
        url = _display_url(self.options.host, self.options.port)
        log.info("serving on %s (%d session(s) at most)", url, self.options.max_sessions)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            if self.options.on_ready is not None:
                self.options.on_ready(url)
            await stop.wait()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            log.info("stopping: ending %d session(s)", len(self.sessions))
            self._stopping = True
            await asyncio.gather(*(s.shut_down() for s in list(self.sessions.values())),
                                 return_exceptions=True)
            await runner.cleanup()
            log.info("stopped")


def _die_with_parent() -> None:
    """In the session's process before it starts: killed when the server dies, even by
    SIGKILL (Linux's PR_SET_PDEATHSIG), so no app outlives it. Textual's web driver keeps
    running when its input closes and can hang on exit once its output pipe is gone, so the
    signal is SIGKILL; every write is a transaction, so nothing is half-written."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _client(request: web.Request) -> str:
    """Who is asking, for the log: the peer, and whom a reverse proxy says it forwards."""
    forwarded = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
    peer = request.remote or "?"
    return f"{peer} (for {forwarded[:64]!r})" if forwarded else peer


def _is_https(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def _display_url(host: str, port: int) -> str:
    shown = host
    if ":" in host and not host.startswith("["):
        shown = f"[{host}]"
    return f"http://{shown}:{port}/"


def _busy_reason(limit: int) -> str:
    return (f"PULSE is serving its limit of {limit} browser session(s); "
            "close one, then press Restart.")


def _busy_page(limit: int) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>PULSE: busy</title>"
        "<style>body{background:#0c181f;color:#eee;font-family:monospace;padding:3em}"
        "</style></head><body><h1>PULSE is busy</h1>"
        f"<p id='busy'>This console is serving its limit of {limit} browser session(s) "
        "(<code>pulse-tui serve --max-sessions</code>). Close another session, then reload "
        "this page.</p></body></html>"
    )


def serve(options: ServeOptions) -> None:
    """Run the server until SIGTERM or ctrl+c."""
    server = PulseServer(options)
    try:
        asyncio.run(server.run())
    except KeyboardInterrupt:  # a second ctrl+c during shutdown
        pass


def session_command(global_args: Sequence[str]) -> list[str]:
    """The command one browser session runs: this Python, the same package and options."""
    return [sys.executable, "-m", "pulse_tui", *global_args]


__all__ = ["PulseServer", "ServeOptions", "is_loopback", "new_token", "serve",
           "session_command", "TOKEN_ENV"]

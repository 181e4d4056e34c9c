"""Real local receivers for notification tests: an aiohttp HTTP server and an aiosmtpd
SMTP server on loopback, each in its own thread, recording what arrives."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller

from tests.e2e.serve_support import free_port


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class HttpReceiver:
    """POSTs to any path are recorded in ``requests``; ``status`` is the reply code."""

    port: int = field(default_factory=free_port)
    status: int = 200
    held: threading.Event | None = None  # when set: requests to /slow wait for it
    requests: list[Received] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        while self.held is not None and request.path.startswith("/slow") and not self.held.is_set():
            await asyncio.sleep(0.05)
        self.requests.append(Received(request.method, request.path, dict(request.headers), body))
        return web.Response(status=self.status, text="ok")

    def start(self) -> HttpReceiver:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


class SmtpReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.box = _Mailbox()
        self._controller = Controller(self.box, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[Message]:
        return self.box.messages

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

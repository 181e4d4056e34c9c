"""A small Chrome DevTools Protocol driver for headless Chromium (no Playwright download).

``Browser.launch()`` starts the machine's Chromium with a fresh profile and a DevTools
port picked by Chromium itself, and talks to it over one websocket (aiohttp's client);
``Page`` evaluates JavaScript, waits for conditions, clicks and takes screenshots.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--window-size=1280,900",
)


def find_chromium() -> str | None:
    explicit = os.environ.get("HUB_CHROMIUM")
    if explicit:
        return explicit
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(Exception):
    pass


class Browser:
    def __init__(self, proc: asyncio.subprocess.Process, session: aiohttp.ClientSession,
                 ws: aiohttp.ClientWebSocketResponse) -> None:  # fmt: skip
        self.proc = proc
        self._session = session
        self._ws = ws
        self._next = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())
        self.console: list[str] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, binary: str, profile: Path) -> AsyncIterator[Browser]:
        proc = await asyncio.create_subprocess_exec(
            binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        browser: Browser | None = None
        try:
            url = await asyncio.wait_for(_devtools_url(proc.stderr), timeout=60)
            session = aiohttp.ClientSession()
            ws = await session.ws_connect(url, max_msg_size=0)
            browser = cls(proc, session, ws)
            # keep draining stderr so Chromium never blocks on a full pipe
            drain = asyncio.create_task(_drain(proc.stderr))
            try:
                yield browser
            finally:
                drain.cancel()
        finally:
            if browser is not None:
                await browser._close()
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), timeout=10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()

    async def _close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()
        await self._session.close()

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._pending:
                future = self._pending.pop(data["id"])
                if "error" in data:
                    future.set_exception(CDPError(str(data["error"])))
                else:
                    future.set_result(data.get("result", {}))
            elif data.get("method") == "Runtime.consoleAPICalled":
                args = data["params"].get("args", [])
                self.console.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in args)
                )
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append(
                    "exception: " + json.dumps(data["params"]["exceptionDetails"])[:500]
                )

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   session_id: str | None = None, timeout: float = 30) -> Any:  # fmt: skip
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = future
        await self._ws.send_str(json.dumps(message))
        return await asyncio.wait_for(future, timeout=timeout)

    async def new_page(self, url: str) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        await page.send("Page.navigate", {"url": url})
        return page


class Page:
    def __init__(self, browser: Browser, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id

    async def send(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return await self.browser.send(method, params, self.session_id)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, what: str, timeout: float = 30) -> Any:
        """Poll ``expression`` until it is truthy; fail naming ``what`` and the console."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Any = None
        while loop.time() < deadline:
            try:
                last = await self.evaluate(expression)
            except CDPError as exc:
                last = str(exc)
            else:
                if last:
                    return last
            await asyncio.sleep(0.2)
        raise AssertionError(
            f"timed out waiting for {what}; last value {last!r}; console: {self.browser.console[-10:]}"
        )

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


async def _devtools_url(stderr: asyncio.StreamReader) -> str:
    seen: list[str] = []
    while True:
        line = await stderr.readline()
        if not line:
            raise CDPError("chromium exited before announcing DevTools: " + "".join(seen)[-2000:])
        text = line.decode(errors="replace")
        seen.append(text)
        found = re.search(r"DevTools listening on (ws://\S+)", text)
        if found:
            return found.group(1)


async def _drain(stderr: asyncio.StreamReader) -> None:
    while await stderr.readline():
        pass

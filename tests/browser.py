"""Debian's chromium, headless, driven over the DevTools protocol (CDP) with websocket-client (in the
lock already, through the Alibaba Cloud SDK): set a cookie, load a page, run a line of JavaScript in
it, take a full-page screenshot. No driver binary and no new Python package.

``make test`` installs chromium when it is missing (``apt-get install -y chromium``); outside CI a test
skips when it is not there, in CI it fails.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest


def chromium_or_skip() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    message = "Debian's chromium is not installed: `make test` installs it (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class Chromium:
    """One headless chromium with one page; use as a context manager."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900, timeout_s: float = 30.0) -> None:
        self.binary, self.width, self.height, self.timeout_s = binary, width, height, timeout_s
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self._next_id = 0
        self._events: list[dict] = []

    def __enter__(self) -> Chromium:
        import websocket

        args = [
            self.binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={self._profile}",
            f"--window-size={self.width},{self.height}", "about:blank",
        ]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = Path(self._profile) / "DevToolsActivePort"
        give_up = time.monotonic() + self.timeout_s
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self._process.poll() is not None or time.monotonic() > give_up:
                self.close()
                raise RuntimeError(f"chromium did not start (exit code {self._process.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            page = next(t for t in json.load(answer) if t["type"] == "page")
        self._ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=self.timeout_s, suppress_origin=True)
        for domain in ("Page", "Network", "Runtime"):
            self.send(f"{domain}.enable")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        try:
            if getattr(self, "_ws", None) is not None:
                self._ws.close()
        finally:
            if self._process.poll() is None:
                os.killpg(self._process.pid, signal.SIGTERM)
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self._process.pid, signal.SIGKILL)
                    self._process.wait()
            shutil.rmtree(self._profile, ignore_errors=True)

    def send(self, method: str, **params: Any) -> dict:
        """One CDP command; its result (events that arrive meanwhile are kept for :meth:`wait_for`)."""
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._events.append(message)

    def wait_for(self, event: str) -> dict:
        give_up = time.monotonic() + self.timeout_s
        while time.monotonic() < give_up:
            for n, message in enumerate(self._events):
                if message.get("method") == event:
                    del self._events[: n + 1]
                    return message.get("params", {})
            self._events.append(json.loads(self._ws.recv()))
        raise TimeoutError(f"no {event} within {self.timeout_s} s")

    def set_cookie(self, url: str, name: str, value: str) -> None:
        assert self.send("Network.setCookie", url=url, name=name, value=value, httpOnly=True, sameSite="Lax")["success"]

    def open(self, url: str) -> None:
        """Load ``url`` and wait for its load event (images included)."""
        self._events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    def poll(self, expression: str, timeout_s: float | None = None) -> Any:
        """Evaluate ``expression`` until it gives something truthy (a page that renders with script)."""
        give_up = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > give_up:
                return value
            time.sleep(0.2)

    def fill(self, selector: str, value: str) -> None:
        """Type ``value`` into an input as a user would (also for inputs a React form controls)."""
        self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)}); el.focus();"
            " Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(el,"
            f" {json.dumps(value)}); el.dispatchEvent(new Event('input', {{bubbles: true}})); }})()"
        )

    def loaded_images(self, timeout_s: float = 20.0) -> list[dict]:
        """Lay the whole page out at once (so lazy images load too), wait until every image has loaded
        or failed, and return each one's ``src`` and ``naturalWidth`` (0: it did not load)."""
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=max(height, self.height),
                  deviceScaleFactor=1, mobile=False)
        return self.evaluate(
            "Promise.race([new Promise(r => setTimeout(r, %d)), Promise.all([...document.images].map(i => i.complete"
            " && i.naturalWidth ? null : new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })))])"
            ".then(() => [...document.images].map(i => ({src: i.getAttribute('src'), width: i.naturalWidth})))" % (timeout_s * 1000)
        )

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (as tall as its content) at the browser's width."""
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=max(height, 200),
                  deviceScaleFactor=1, mobile=False)
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        self.send("Emulation.clearDeviceMetricsOverride")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

"""Headless Chromium driven over the DevTools protocol: open a page, click, read the rendered text,
take a screenshot. Only loopback addresses are visited."""
import asyncio
import base64
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import websockets

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
         "--window-size=1400,1600"]


class Page:
    def __init__(self, ws):
        self.ws, self.n = ws, 0

    async def call(self, method, **params):
        self.n += 1
        await self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def js(self, expression):
        r = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return r.get("result", {}).get("value")

    async def wait_text(self, needle, timeout=60.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = await self.js("document.body ? document.body.innerText : ''") or ""
            if needle in text:
                return text
            await asyncio.sleep(0.5)
        raise AssertionError(f"{needle!r} not on the page; it shows: {text[:2000]}")


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:  # the group is gone already
        pass


async def _session(chromium, url, steps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Chromium's helper processes outlive the browser process for a moment and keep writing to the profile:
    # the whole process group is stopped, and a profile file left behind is not a test failure.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
                                 "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                        targets = [t for t in json.load(r) if t["type"] == "page"]
                    if targets:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("chromium did not open its debugging port")
                await asyncio.sleep(0.3)
            async with websockets.connect(targets[0]["webSocketDebuggerUrl"], max_size=64 << 20) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                await page.call("Page.navigate", url=url)
                return await steps(page)
        finally:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(10)


def run(chromium, url, steps):
    return asyncio.run(_session(chromium, url, steps))


async def screenshot(page, path):
    data = await page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    path.write_bytes(base64.b64decode(data["data"]))

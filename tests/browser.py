"""A real headless Chromium driven over the DevTools protocol, for the HTML report's tests.

Only the standard library: the protocol's WebSocket (RFC 6455, text frames, client-side
masking) is small enough to speak directly. Chromium listens on 127.0.0.1 only.

    with Browser() as b:
        page = b.open("file:///.../index.html")   # errors, evaluate(), screenshot()
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request

from conftest import process_tree

TIMEOUT_S = 120.0  # generous: a loaded 2-core machine starts Chromium slowly


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class _WebSocket:
    def __init__(self, url: str):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        if not m:
            raise ValueError(f"not a ws:// URL: {url}")
        self.sock = socket.create_connection((m.group(1), int(m.group(2))), timeout=TIMEOUT_S)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        self.sock.sendall(
            (
                f"GET {m.group(3)} HTTP/1.1\r\nHost: {m.group(1)}:{m.group(2)}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        status, _, rest = head.partition(b"\r\n\r\n")
        if b" 101 " not in status.split(b"\r\n")[0]:
            raise ConnectionError(f"WebSocket handshake refused: {status[:200]!r}")
        self.buf = rest

    def send(self, text: str) -> None:
        data = text.encode()
        n = len(data)
        head = bytes([0x81])  # FIN, text frame
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = secrets.token_bytes(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self) -> str:
        """One whole message (continuation frames joined; pings answered)."""
        parts = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode == 0x9:  # ping: answer with a masked pong
                self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self) -> None:
        self.sock.close()


class Page:
    """One tab: every console error, uncaught exception and failed load is kept in `errors`."""

    def __init__(self, ws_url: str):
        self.ws = _WebSocket(ws_url)
        self.next_id = 0
        self.events: list[dict] = []
        self.errors: list[str] = []
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method)

    def _note(self, msg: dict) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.errors.append(
                "exception: " + (d.get("exception", {}).get("description") or d.get("text", ""))
            )
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
            )
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            e = p["entry"]
            self.errors.append(f"log ({e.get('source')}): {e.get('text')} {e.get('url', '')}".strip())
        self.events.append(msg)

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._note(msg)

    def wait_for(self, method: str, since: int = 0, timeout: float = TIMEOUT_S) -> dict:
        """The first `method` event from events[since] on, waiting for it when not yet seen."""
        for msg in self.events[since:]:
            if msg.get("method") == method:
                return msg
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self._note(msg)
            if msg.get("method") == method:
                return msg
        raise TimeoutError(f"no {method} within {timeout} s")

    def navigate(self, url: str, width: int = 1400, height: int = 900) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        since = len(self.events)  # the load event may arrive before navigate's own reply
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired", since)

    def evaluate(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError(
                f"evaluate failed: {d.get('exception', {}).get('description') or d.get('text')}"
            )
        return r["result"].get("value")

    def screenshot(self, path: str) -> None:
        """The whole page (not just the viewport) as a PNG."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))


class Browser:
    def __init__(self, executable: str | None = None):
        self.executable = executable or chromium_path()
        if not self.executable:
            raise FileNotFoundError("no chromium executable")

    def __enter__(self) -> Browser:
        self.profile = tempfile.mkdtemp(prefix="ttabench-chromium-")
        args = [
            self.executable,
            "--headless",
            "--no-sandbox",  # tests run as root in CI, where the sandbox refuses to start
            "--disable-gpu",
            "--disable-breakpad",  # no crash handler that could outlive the browser
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            "about:blank",
        ]
        # Chromium's own log goes to a file: an unread pipe could fill up and stall it.
        self.log = open(os.path.join(self.profile, "chromium.log"), "w")
        # Its own session: its zygote and renderers go with it (os.killpg in __exit__), and a tag
        # of its own: a helper that leaves the group (a crash handler) goes too.
        self.tree = process_tree()
        env = self.tree.__enter__()
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=self.log, env=env, start_new_session=True
        )
        try:
            self.port = self._port()
        except BaseException:  # a start-up that times out or fails leaves no Chromium behind
            self.__exit__()
            raise
        return self

    def _port(self) -> int:
        # Chromium writes the port it chose (--remote-debugging-port=0) into the profile.
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(self.log.name) as f:
                    raise RuntimeError(f"chromium exited {self.proc.returncode}: {f.read()[-2000:]}")
            try:
                with open(path) as f:
                    first = f.readline().strip()
                if first:
                    return int(first)
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError("chromium did not open its DevTools port")

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def open(self, url: str) -> Page:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
            target = json.load(r)
        page = Page(target["webSocketDebuggerUrl"])
        page.navigate(url)
        return page

    def __exit__(self, *exc) -> None:
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self._signal(signal.SIGKILL)  # the browser and whatever of its group is left
        self.proc.wait()
        self.tree.__exit__(None, None, None)  # and whatever it started elsewhere
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

"""A headless Chromium page driven over the DevTools protocol, for tests of what a person sees.

Chromium's `--remote-debugging-pipe` speaks the DevTools protocol on file descriptors 3 (commands
in) and 4 (replies and events out), one JSON message per NUL-terminated record. That is all a test
needs to set the viewport, click like a mouse, read element positions and collect every console
message, uncaught exception, CSP violation and network request, with the system browser and no
driver: playwright and selenium would each download or need a matching driver binary.
DevTools evaluation is not subject to the page's CSP, so the report's own policy stays intact.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run")
COMMAND_TIMEOUT_S = 30.0


class BrowserError(RuntimeError):
    """The browser did not answer in time, or answered a command with an error."""


class Page:
    """One tab of a fresh headless Chromium with an empty profile; use as a context manager."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 900):
        self.width, self.height = width, height
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def wire_pipes() -> None:  # in the child: the protocol's fixed descriptors 3 and 4
            commands, replies = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_read, from_browser_write))
            os.dup2(commands, 3)  # out of the way first: either pipe end may itself be 3 or 4
            os.dup2(replies, 4)

        command = [shutil.which("chromium") or "chromium", *HEADLESS_FLAGS, f"--user-data-dir={profile}",
                   "--remote-debugging-pipe", f"--window-size={width},{height}", "about:blank"]
        self._process = subprocess.Popen(command, pass_fds=(3, 4), preexec_fn=wire_pipes,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._session = ""
        targets = self.send("Target.getTargets")["targetInfos"]
        page_id = next(t["targetId"] for t in targets if t["type"] == "page")
        self._session = self.send("Target.attachToTarget", targetId=page_id, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_browser, 65536):
            buffer += chunk
            *records, buffer = buffer.split(b"\0")
            for record in records:
                self._messages.put(json.loads(record))

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run one protocol command in the page's session and return its result; events that
        arrive meanwhile are kept in `events`."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self._session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while True:
            reply = self._receive(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        try:
            return self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise BrowserError(f"chromium did not answer {waiting_for} within {COMMAND_TIMEOUT_S:.0f} s") from None

    def wait_for(self, event: str) -> dict[str, Any]:
        """The first event named `event` (already received or still to come)."""
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        seen = next((e for e in self.events if e["method"] == event), None)
        while seen is None:
            message = self._receive(deadline, event)
            if "method" in message:
                self.events.append(message)
                seen = message if message["method"] == event else None
        return seen

    def open(self, url: str) -> None:
        """Navigate to `url` and wait until it and its scripts have loaded."""
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable results only)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def rect(self, selector: str) -> dict[str, float] | None:
        """The viewport rectangle of the first element matching `selector` (None if absent)."""
        return self.evaluate(
            f"(function () {{ var e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " var r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, left: r.left,"
            " right: r.right, width: r.width, height: r.height}; })()")

    def click(self, selector: str) -> None:
        """Scroll the element into view and click its centre with the mouse, as a person would."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).scrollIntoView({{block: 'center'}})")
        box = self.rect(selector)
        if box is None:
            raise BrowserError(f"nothing matches {selector!r}")
        x, y = box["left"] + box["width"] / 2, box["top"] + box["height"] / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def type_text(self, selector: str, text: str) -> None:
        """Focus the element and type `text` into it."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", text=text)

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and browser log errors (CSP violations
        among them) seen so far."""
        self.send("Runtime.evaluate", expression="0")  # flush events queued before this point
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                found.append(f"log: {params['entry'].get('text')}")
        return found

    def requests(self) -> list[str]:
        """URLs of every network request the page made, the page itself included."""
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        os.killpg(self._process.pid, signal.SIGKILL)  # the browser and the helpers it started
        self._process.wait()
        os.close(self._to_browser)
        self._reader.join(timeout=5)  # ends at end of file: every writer is gone
        os.close(self._from_browser)

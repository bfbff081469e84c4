"""The chat page at / in headless Chromium: typed into like a user, two turns, and each
reply checked against the same conversation sent through the API.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
JSON messages ending in NUL on fds 3 and 4), so no websocket client is needed.
tools/test.sh installs Debian's chromium and sets RWKV_EDGE_REQUIRE_BROWSER=1, which
turns a missing browser from a skip into a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .serve_util import ServerProcess

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.environ.get("RWKV_EDGE_REQUIRE_BROWSER"):
        pytest.fail("RWKV_EDGE_REQUIRE_BROWSER is set but no chromium is installed")
    pytest.skip("no chromium (tools/test.sh installs it)")


class Browser:
    """One headless Chromium and one page in it, over the DevTools pipe."""

    def __init__(self, exe: str, profile: Path) -> None:
        to_chrome_r, self._out = os.pipe()
        self._in, from_chrome_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4 (bash: dash cannot
        # redirect the two-digit fds a test process has).
        script = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}'
        self.proc = subprocess.Popen(
            ["bash", "-c", script, exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.session: str | None = None

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if self.session is not None:
            msg["sessionId"] = self.session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        while True:  # replies come in order; events in between are skipped
            while b"\0" not in self._buf:
                chunk = os.read(self._in, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply["result"])

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url=url)["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]

    def js(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := self.js(expression)):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}")
            time.sleep(0.05)
        return value

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(_browser(), tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


def test_chat_page_holds_a_conversation(browser: Browser) -> None:
    srv = ServerProcess(["--max-tokens-cap", "64"])
    try:
        browser.open(srv.url + "/")
        browser.wait_for(  # the new target starts as about:blank: wait for the page itself
            "document.readyState === 'complete' && document.getElementById('model') !== null"
        )
        assert browser.js("document.getElementById('model').textContent") == srv.name
        browser.js("document.getElementById('temperature').value = '0'")
        browser.js("document.getElementById('max_tokens').value = '24'")
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        messages: list[dict[str, str]] = []
        for turn, text in enumerate(["What is a hacker?", "And a wizard?"], 1):
            browser.js(f"document.getElementById('input').value = {json.dumps(text)}")
            browser.js("document.getElementById('send').click()")
            browser.wait_for(
                f"document.querySelectorAll('.assistant').length === {turn} && "
                "document.body.dataset.state === 'idle'"
            )
            assert browser.js("document.getElementById('status').textContent") == ""
            shown = browser.js(f"document.querySelectorAll('.assistant')[{turn - 1}].textContent")
            messages.append({"role": "user", "content": text})
            api = client.chat.completions.create(
                model=srv.name, messages=messages, temperature=0, max_tokens=24
            )
            assert shown == api.choices[0].message.content and len(shown) > 10
            messages.append({"role": "assistant", "content": shown})
        # A bad request's error reaches the page, and the conversation stays as it was.
        browser.js("document.getElementById('temperature').value = '7'")
        browser.js("document.getElementById('input').value = 'hello'")
        browser.js("document.getElementById('send').click()")
        status = browser.wait_for("document.getElementById('status').textContent")
        assert "temperature" in status
    finally:
        srv.stop()

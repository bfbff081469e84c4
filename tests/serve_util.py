"""Start `rwkv-edge serve` as a real process on 127.0.0.1 (a free port) for the tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

LISTENING = re.compile(r"serving (\S+) on (http://127\.0\.0\.1:\d+)")


class ServerProcess:
    """``rwkv-edge serve --port 0 ARGS`` in a subprocess; ``url`` once it listens."""

    def __init__(self, args: Sequence[str] = (), timeout: float = 60.0) -> None:
        cmd = [sys.executable, "-P", "-m", "rwkv_edge.cli.main", "serve", "--port", "0", *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        self.log: list[str] = []
        found = threading.Event()
        self.url = self.name = ""

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line)
                m = LISTENING.search(line)
                if m and not found.is_set():
                    self.name, self.url = m.group(1), m.group(2)
                    found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not found.wait(timeout):
            self.stop()
            raise RuntimeError("the server did not start:\n" + "".join(self.log))

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.request("GET", path, None, headers)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("POST", path, data, headers)

    def request(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """(status, parsed JSON body) over plain HTTP, errors included."""
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        req = urllib.request.Request(self.url + path, data, hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def signal(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``; the exit status once the process has ended."""
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wait_idle(self, timeout: float = 10.0) -> dict[str, Any]:
        """The /health body once no sequence is active or waiting."""
        deadline = time.monotonic() + timeout
        while True:
            _, health = self.get("/health")
            if health["active"] == 0 and health["waiting"] == 0:
                return dict(health)
            if time.monotonic() > deadline:
                raise AssertionError(f"still busy after {timeout} s: {health}")
            time.sleep(0.05)

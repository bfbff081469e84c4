"""The HTTP layer: a Starlette app on uvicorn (the optional ``server`` extra).

Handlers validate and tokenize on the event loop, hand a ``GenRequest`` to the
scheduler thread and relay its events: as server-sent events (``stream``) or
as one JSON body. A client that disconnects cancels its sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from html import escape as html_escape
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..state_cache import StateCache
from .api import (
    ApiError,
    Limits,
    Reply,
    chat_prompt,
    check_model,
    completion_prompt,
    generation_request,
    model_card,
    stream_flags,
)
from .scheduler import Done, Event, GenRequest, Piece, Scheduler

log = logging.getLogger("rwkv_edge.server")
MAX_BODY = 8 << 20  # bytes of JSON a request may send


class _Relay:
    """Scheduler events (its thread) into an asyncio queue (the event loop's)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def sink(self, ev: Event) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to tell
            self.loop.call_soon_threadsafe(self.queue.put_nowait, ev)


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


class Server:
    """Everything one served model needs; ``app`` is the ASGI application."""

    def __init__(
        self,
        model: Any,
        limits: Limits,
        *,
        api_key: str | None = None,
        cache: StateCache | None = None,
        state_dir: Path | None = None,
        max_batch: int = 32,
    ) -> None:
        self.model, self.limits, self.api_key = model, limits, api_key
        self.cache, self.state_dir, self.max_batch = cache, state_dir, max_batch
        self.created = int(time.time())
        self.scheduler: Scheduler | None = None
        routes = [
            Route("/", self.page, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{name:path}", self.one_model, methods=["GET"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
        ]
        self.app = Starlette(
            routes=routes,
            lifespan=self.lifespan,
            exception_handlers={HTTPException: self._http_error, ApiError: self._api_error},
        )

    # -- lifecycle ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self.cache is not None and self.state_dir is not None:
            for line in self.cache.restore(self.state_dir, self.model):
                log.warning("state cache: skipped %s", line)
        self.scheduler = Scheduler(self.model, self.cache, max_batch=self.max_batch)
        try:
            yield
        finally:
            self.scheduler.stop()
            if self.cache is not None and self.state_dir is not None:
                n = self.cache.save(self.state_dir, self.model)
                log.info("state cache: saved %d states to %s", n, self.state_dir)

    # -- errors and auth -----------------------------------------------------------------

    async def _api_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return JSONResponse(exc.body(), exc.status)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        err = ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")
        err.code = code
        return JSONResponse(err.body(), exc.status_code, headers=exc.headers)

    def _authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        got = request.headers.get("authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {self.api_key}".encode()):
            raise ApiError(
                401, "missing or wrong API key (Authorization: Bearer KEY)", None, "invalid_api_key"
            )

    async def _json_body(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            raise ApiError(413, f"the request body is larger than {MAX_BODY} bytes")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"the request body is larger than {MAX_BODY} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    # -- routes ----------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        html = resources.files(__package__).joinpath("chat.html").read_text("utf-8")
        return HTMLResponse(html.replace("{{MODEL}}", html_escape(self.limits.model_name)))

    async def health(self, request: Request) -> Response:
        body: dict[str, Any] = {"status": "ok", "model": self.limits.model_name}
        if self.scheduler is not None:
            body.update(self.scheduler.load())
        if self.cache is not None:
            body["state_cache"] = self.cache.stats()
        return JSONResponse(body)

    async def models(self, request: Request) -> Response:
        self._authorize(request)
        card = model_card(self.limits.model_name, self.created)
        return JSONResponse({"object": "list", "data": [card]})

    async def one_model(self, request: Request) -> Response:
        self._authorize(request)
        check_model({"model": request.path_params["name"]}, self.limits)
        return JSONResponse(model_card(self.limits.model_name, self.created))

    async def completions(self, request: Request) -> Response:
        body = await self._json_body(request)
        check_model(body, self.limits)
        # Off the event loop: a long prompt must not stall the other streams.
        tokens = await asyncio.to_thread(completion_prompt, body, self.model.tokenizer, self.limits)
        return await self._generate(request, body, tokens, chat=False)

    async def chat_completions(self, request: Request) -> Response:
        body = await self._json_body(request)
        check_model(body, self.limits)
        tokens = await asyncio.to_thread(chat_prompt, body, self.model.tokenizer, self.limits)
        return await self._generate(request, body, tokens, chat=True)

    # -- generation ----------------------------------------------------------------------

    async def _generate(
        self, request: Request, body: dict[str, Any], tokens: list[int], *, chat: bool
    ) -> Response:
        stream, include_usage = stream_flags(body)
        req = generation_request(body, tokens, self.limits, chat=chat)
        reply = Reply(self.limits.model_name, chat)
        relay, handle = self._submit(req)
        if stream:
            events = self._sse_events(reply, relay, include_usage)
            return StreamingResponse(
                _cancel_on_exit(events, handle.cancel),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        collect = asyncio.ensure_future(_collect(relay))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({collect, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not collect.done():  # the client left (or we are being cancelled)
                handle.cancel()
                collect.cancel()
        if not collect.done() or collect.cancelled():
            return Response(status_code=499)  # nobody is listening
        text, done = collect.result()
        _raise_for(done)
        return JSONResponse(reply.whole(text, done))

    def _submit(self, req: GenRequest) -> tuple[_Relay, Any]:
        if self.scheduler is None:
            raise ApiError(503, "the server is not ready", kind="server_error")
        relay = _Relay()
        try:
            handle = self.scheduler.submit(req, relay.sink)
        except RuntimeError as e:
            raise ApiError(503, str(e), kind="server_error") from None
        return relay, handle

    async def _sse_events(
        self, reply: Reply, relay: _Relay, include_usage: bool
    ) -> AsyncIterator[str]:
        if reply.chat:
            yield _sse(reply.chunk("", first=True))
        while True:
            ev = await relay.queue.get()
            if isinstance(ev, Piece):
                yield _sse(reply.chunk(ev.text))
                continue
            try:
                _raise_for(ev)
            except ApiError as e:  # mid-stream: the status is sent, so an error event
                yield _sse(e.body())
                return
            yield _sse(reply.chunk(None, ev.finish_reason))
            if include_usage:
                yield _sse(reply.usage_chunk(ev))
            yield "data: [DONE]\n\n"
            return


def _raise_for(done: Done) -> None:
    if done.finish_reason == "error":
        raise ApiError(500, f"generation failed: {done.error}", kind="server_error")
    if done.finish_reason == "cancelled":
        raise ApiError(503, "the server is shutting down", kind="server_error")


async def _cancel_on_exit(events: AsyncIterator[str], cancel: Any) -> AsyncIterator[str]:
    """Relay ``events``; however the stream ends (a disconnect cancels it), cancel the job."""
    try:
        async for e in events:
            yield e
    finally:
        cancel()


async def _collect(relay: _Relay) -> tuple[str, Done]:
    parts: list[str] = []
    while True:
        ev = await relay.queue.get()
        if isinstance(ev, Done):
            return "".join(parts), ev
        parts.append(ev.text)


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body was read: only a disconnect remains)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


# -- running it --------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0 picks a free one); uvicorn serves on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def run(server: Server, sock: socket.socket, *, shutdown_timeout: int = 5) -> None:
    """Serve until SIGINT/SIGTERM, then stop taking requests, give running ones
    ``shutdown_timeout`` seconds, cancel the rest, stop the scheduler, save the cache."""
    import uvicorn

    class QuietExit(uvicorn.Server):
        """uvicorn re-raises the signal after a graceful shutdown, which kills the
        process by it; a command that shut down cleanly should exit 0 instead."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, h in old.items():
                    signal.signal(s, h)

    config = uvicorn.Config(
        server.app,
        http="h11",
        lifespan="on",
        log_level="warning",
        timeout_graceful_shutdown=shutdown_timeout,
    )
    QuietExit(config).run(sockets=[sock])

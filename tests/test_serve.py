"""`rwkv-edge serve` as a real process, driven by the official `openai` client and by
raw HTTP: every answer is checked against the library run in-process (the same tokens,
sampler and seed give the same text), under concurrency too. The servers are started
without --host, and ServerProcess accepts only a 127.0.0.1 address: the default binding."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from rwkv_edge import Model, c_backend_available
from rwkv_edge.chat_format import (
    CHAT_SAMPLING,
    DEMO_MIN_REPLY_CHARS,
    STOPS,
    conversation_segments,
)
from rwkv_edge.generate import complete

from .serve_util import ServerProcess

openai = pytest.importorskip("openai")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

MAX_PROMPT = 300  # --max-prompt-tokens of the test server
CAP = 2000  # --max-tokens-cap
NO_PENALTY = dict(presence_penalty=0.0, frequency_penalty=0.0)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    srv = ServerProcess(["--max-prompt-tokens", str(MAX_PROMPT), "--max-tokens-cap", str(CAP)])
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def model() -> Iterator[Any]:
    m = Model.load()
    yield m
    m.close()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Any:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def expected(model: Any, prompt: str | Sequence[int], **kw: Any) -> tuple[str, str]:
    """(text, finish_reason) of the library's generate() for the same request."""
    out = complete(model, prompt, **kw)
    reason = "length" if out.stats.stop_reason == "length" else "stop"
    return out.text, reason


def chat_tokens(model: Any, messages: list[dict[str, str]]) -> list[int]:
    segs = conversation_segments([(m["role"], m["content"]) for m in messages])
    return [t for s in segs for t in model.tokenizer.encode(s)]


def expected_chat(model: Any, messages: list[dict[str, str]], **kw: Any) -> tuple[str, str]:
    """The chat's reply: its format, stops and sampler defaults, with ``kw`` on top."""
    stop = [*STOPS, *kw.pop("stop", [])]
    kw = {**CHAT_SAMPLING, **kw}
    text, reason = expected(
        model, chat_tokens(model, messages), stop=stop, min_chars=DEMO_MIN_REPLY_CHARS, **kw
    )
    return text.lstrip(), reason


def test_models_and_health(server: ServerProcess, client: Any) -> None:
    assert [m.id for m in client.models.list().data] == [server.name]
    assert client.models.retrieve(server.name).id == server.name
    status, health = server.get("/health")
    assert status == 200 and health["status"] == "ok" and health["model"] == server.name


def test_completion_greedy_equals_the_library(
    server: ServerProcess, client: Any, model: Any
) -> None:
    r = client.completions.create(
        model=server.name, prompt="And God said", max_tokens=24, temperature=0, **NO_PENALTY
    )
    text, reason = expected(model, "And God said", max_tokens=24, temperature=0, **NO_PENALTY)
    assert r.choices[0].text == text and len(text) > 20
    assert r.choices[0].finish_reason == reason == "length"
    assert r.usage.prompt_tokens == len(model.tokenizer.encode("And God said"))
    assert r.usage.completion_tokens == 24


def test_streaming_equals_non_streaming_and_the_library(
    server: ServerProcess, client: Any, model: Any
) -> None:
    kw = dict(max_tokens=32, temperature=1.0, top_p=0.9, seed=11, presence_penalty=0.3)
    whole = client.completions.create(model=server.name, prompt="hacker n.", **kw)
    chunks = list(
        client.completions.create(
            model=server.name,
            prompt="hacker n.",
            stream=True,
            stream_options={"include_usage": True},
            **kw,
        )
    )
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    text, reason = expected(model, "hacker n.", **kw)
    assert streamed == whole.choices[0].text == text
    assert len([c for c in chunks if c.choices]) > 5  # it really streamed, piece by piece
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_chat_streaming_and_not_equal_the_library(
    server: ServerProcess, client: Any, model: Any
) -> None:
    messages = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "What is a hacker?"},
    ]
    kw = dict(max_tokens=40, temperature=0.8, seed=5)
    whole = client.chat.completions.create(model=server.name, messages=messages, **kw)
    stream = client.chat.completions.create(model=server.name, messages=messages, stream=True, **kw)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    text, reason = expected_chat(model, messages, **kw)
    assert whole.choices[0].message.content == streamed == text
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason == chunks[-1].choices[0].finish_reason == reason


def test_stop_strings(server: ServerProcess, client: Any, model: Any) -> None:
    full, _ = expected(model, "And God said", max_tokens=24, temperature=0, **NO_PENALTY)
    word = full.split()[3]  # a stop string that greedy decoding reaches mid-reply
    text, reason = expected(
        model, "And God said", max_tokens=24, temperature=0, stop=[word], **NO_PENALTY
    )
    assert reason == "stop" and word not in text and full.startswith(text)
    for stream in (False, True):
        r = client.completions.create(
            model=server.name,
            prompt="And God said",
            max_tokens=24,
            temperature=0,
            stop=["never appears", word],
            stream=stream,
            **NO_PENALTY,
        )
        chunks = list(r) if stream else [r]
        assert "".join(c.choices[0].text for c in chunks) == text
        assert chunks[-1].choices[0].finish_reason == "stop"


def _exact_isa() -> str:
    """A kernel set whose batched decode is bit for bit with single tokens (test_batch.py:
    from 8 rows the AVX-512 and NEON GEMMs sum in another order, and sampled text then
    drifts apart after a few dozen tokens)."""
    if not c_backend_available():
        return "auto"  # the numba engine decodes a batch one state at a time
    from rwkv_edge._c_engine import supported_isas

    return "avx2" if "avx2" in supported_isas() else "ref"


def test_concurrent_clients_each_get_their_own_answer() -> None:
    """12 streaming clients at once (decoded as one batch) get what each would alone:
    no client sees another's tokens, state or sampler."""
    isa = _exact_isa()
    srv = ServerProcess(["--isa", isa])
    solo = Model.load(isa=isa)
    try:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
        _concurrent_clients(srv, client, solo)
    finally:
        srv.stop()
        solo.close()


def _concurrent_clients(server: ServerProcess, client: Any, model: Any) -> None:
    prompts = ["And God said", "It is a truth", "hacker n.", "The LORD"]
    jobs = [(prompts[i % 4], 100 + i) for i in range(12)]
    results: dict[int, str] = {}

    def one(i: int) -> None:
        prompt, seed = jobs[i]
        r = client.completions.create(
            model=server.name, prompt=prompt, max_tokens=32, seed=seed, stream=True
        )
        results[i] = "".join(c.choices[0].text for c in r)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    health = server.wait_idle()
    for i, (prompt, seed) in enumerate(jobs):
        want = expected(model, prompt, max_tokens=32, seed=seed)[0]
        assert results[i] == want, (
            f"client {i}: its answer in a batch differs from the same request alone"
        )
    assert health["batches"] < health["tokens_generated"]  # steps really were shared


def test_a_conversation_reuses_its_cached_state(server: ServerProcess, client: Any) -> None:
    messages = [{"role": "user", "content": "Tell me of the sea and the ships upon it."}]
    first = client.chat.completions.create(
        model=server.name, messages=messages, max_tokens=24, seed=1
    )
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And then?"},
    ]
    second = client.chat.completions.create(
        model=server.name, messages=messages, max_tokens=8, seed=1
    )
    # At least the whole first prompt came from the cache; only the new turn was read.
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens
    assert second.usage.prompt_tokens > first.usage.prompt_tokens


# -- bad requests --------------------------------------------------------------------------


def _bad_requests(name: str) -> list[tuple[str, Any, int, str | None]]:
    """(path, body, status, param) of requests the server must refuse."""
    ok_chat = {"model": name, "messages": [{"role": "user", "content": "hi"}]}
    long_prompt = "word " * (MAX_PROMPT * 2)
    c, ch = "/v1/completions", "/v1/chat/completions"
    return [
        (c, b"{not json", 400, None),
        (c, b"\xff\xfe", 400, None),
        (c, [1, 2], 400, None),
        (c, {"model": "gpt-4o", "prompt": "x"}, 404, "model"),
        (c, {"prompt": "x", "temperature": 2.5}, 400, "temperature"),
        (c, {"prompt": "x", "temperature": "hot"}, 400, "temperature"),
        (c, {"prompt": "x", "top_p": -0.1}, 400, "top_p"),
        (c, {"prompt": "x", "presence_penalty": 3}, 400, "presence_penalty"),
        (c, {"prompt": "x", "frequency_penalty": -9}, 400, "frequency_penalty"),
        (c, {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        (c, {"prompt": "x", "max_tokens": CAP + 1}, 400, "max_tokens"),
        (c, {"prompt": "x", "max_tokens": 1.5}, 400, "max_tokens"),
        (c, {"prompt": "x", "seed": "one"}, 400, "seed"),
        (c, {"prompt": "x", "n": 2}, 400, "n"),
        (c, {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
        (c, {"prompt": "x", "stop": [""]}, 400, "stop"),
        (c, {"prompt": "x", "stream": "yes"}, 400, "stream"),
        (c, {"prompt": "x", "logprobs": 5}, 400, "logprobs"),
        (c, {"prompt": ""}, 400, "prompt"),
        (c, {"prompt": None}, 400, "prompt"),
        (c, {"prompt": [5, 1 << 20]}, 400, "prompt"),
        (c, {"prompt": long_prompt}, 400, "prompt"),
        (ch, {**ok_chat, "messages": []}, 400, "messages"),
        (ch, {**ok_chat, "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages"),
        (ch, {**ok_chat, "messages": [{"role": "user"}]}, 400, "messages"),
        (ch, {**ok_chat, "messages": [{"role": "user", "content": long_prompt}]}, 400, "messages"),
        (ch, {**ok_chat, "model": "nope"}, 404, "model"),
        (ch, {**ok_chat, "temperature": -1}, 400, "temperature"),
    ]


def test_every_bad_request_gets_a_4xx_json_error(server: ServerProcess) -> None:
    for path, body, status, param in _bad_requests(server.name):
        got, err = server.post(path, body)
        assert got == status, (body, got, err)
        assert set(err["error"]) == {"message", "type", "param", "code"}, err
        assert err["error"]["type"] == "invalid_request_error" and err["error"]["message"]
        assert err["error"]["param"] == param, (body, err)
    long_err = server.post("/v1/completions", {"prompt": "word " * MAX_PROMPT * 2})[1]["error"]
    assert long_err["code"] == "context_length_exceeded" and str(MAX_PROMPT) in long_err["message"]
    assert server.get("/v1/nothing")[0] == 404
    assert server.request("GET", "/v1/completions", None)[0] == 405
    assert server.get("/health")[0] == 200  # still up


def test_the_openai_client_sees_typed_errors(server: ServerProcess, client: Any) -> None:
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model=server.name, prompt="x", temperature=9)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-4o", prompt="x")


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_disconnects_stops_its_generation(
    server: ServerProcess, stream: bool
) -> None:
    before = server.wait_idle()["tokens_generated"]
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "And God said", "max_tokens": CAP, "stream": stream}).encode()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        if stream:
            got = b""
            while got.count(b"data: ") < 3:  # the stream has begun
                got += s.recv(4096)
        else:
            deadline = time.monotonic() + 10
            while server.get("/health")[1]["tokens_generated"] == before:  # it has begun
                assert time.monotonic() < deadline
                time.sleep(0.01)
    t0 = time.monotonic()
    after = server.wait_idle(timeout=5)
    assert time.monotonic() - t0 < 5
    assert 0 < after["tokens_generated"] - before < CAP  # stopped long before max_tokens


# -- separate servers: API key, shutdown, the cache on disk -------------------------------


def test_api_key_shutdown_and_state_dir(tmp_path: Path) -> None:
    key = "sk-test-123"
    args = ["--api-key", key, "--state-dir", str(tmp_path), "--shutdown-timeout", "1"]
    srv = ServerProcess(args)
    try:
        assert srv.get("/v1/models")[0] == 401
        status, err = srv.get("/v1/models", {"Authorization": "Bearer wrong"})
        assert status == 401 and err["error"]["code"] == "invalid_api_key"
        assert srv.get("/health")[0] == 200  # health needs no key
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)
        msgs = [{"role": "user", "content": "Who wrote of pride and prejudice?"}]
        first = c.chat.completions.create(model=srv.name, messages=msgs, max_tokens=8, seed=3)
        # A long request in flight when SIGINT comes: cut after --shutdown-timeout.
        stream = c.completions.create(model=srv.name, prompt="The", max_tokens=CAP, stream=True)
        next(iter(stream))
        t0 = time.monotonic()
        assert srv.signal(signal.SIGINT) == 0
        assert time.monotonic() - t0 < 10
        assert "server stopped" in "".join(srv.log)
    finally:
        srv.stop()
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert saved and all(n.startswith("prefix-") and n.endswith(".rwst") for n in saved)

    srv = ServerProcess(args)  # a restart finds the conversation's state on disk
    try:
        _, health = srv.get("/health")
        assert health["state_cache"]["entries"] == len(saved)
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)
        again = c.chat.completions.create(model=srv.name, messages=msgs, max_tokens=8, seed=3)
        assert again.usage.prompt_tokens_details.cached_tokens == first.usage.prompt_tokens
        assert again.choices[0].message.content == first.choices[0].message.content
    finally:
        srv.stop()

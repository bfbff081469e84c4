"""Request validation and response bodies of the OpenAI-style API (no HTTP stack here).

Every bad request becomes an ``ApiError`` carrying the status and the
OpenAI-style error body (``{"error": {"message", "type", "param", "code"}}``).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..chat_format import ROLES, STOPS, conversation_segments
from ..sampling import CHAT, SamplingParams
from .scheduler import Done, GenRequest

MAX_STOPS = 4  # as OpenAI's API
# Where a request leaves a setting out: `rwkv-edge generate`'s defaults for completions
# (SamplingParams'), `rwkv-edge chat`'s for chat.
COMPLETION_DEFAULTS = SamplingParams()
CHAT_DEFAULTS = CHAT


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = (
            status,
            message,
            param,
            code,
            kind,
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass
class Limits:
    """What the server allows and assumes; set from the command line."""

    model_name: str
    vocab_size: int
    max_prompt_tokens: int = 16384
    max_tokens_cap: int = 4096
    default_max_tokens: int = 256
    chat_min_chars: int = 0  # the built-in demo model's replies need a minimum length


def _number(body: dict[str, Any], name: str, lo: float, hi: float, default: float) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ApiError(400, f"'{name}' must be a number, got {v!r}", name, "invalid_type")
    if not lo <= v <= hi:
        raise ApiError(400, f"'{name}' must be in [{lo}, {hi}], got {v}", name, "invalid_value")
    return float(v)


def _integer(body: dict[str, Any], name: str, lo: int, hi: int, default: int | None) -> int | None:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise ApiError(400, f"'{name}' must be an integer, got {v!r}", name, "invalid_type")
    if not lo <= v <= hi:
        raise ApiError(400, f"'{name}' must be in [{lo}, {hi}], got {v}", name, "invalid_value")
    return v


def _stops(body: dict[str, Any]) -> list[str]:
    v = body.get("stop")
    if v is None:
        return []
    stops = [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, "'stop' must be a non-empty string or a list of them", "stop")
    if len(stops) > MAX_STOPS:
        raise ApiError(400, f"'stop' takes at most {MAX_STOPS} strings", "stop", "invalid_value")
    return stops


def check_model(body: dict[str, Any], limits: Limits) -> None:
    name = body.get("model", limits.model_name)
    if name != limits.model_name:
        raise ApiError(
            404,
            f"the model {name!r} does not exist; this server serves {limits.model_name!r}",
            "model",
            "model_not_found",
        )


def stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage)."""
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false", "stream", "invalid_type")
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise ApiError(400, "'stream_options' must be an object", "stream_options")
    return stream, bool(opts.get("include_usage", False))


def generation_request(
    body: dict[str, Any], prompt_tokens: list[int], limits: Limits, *, chat: bool
) -> GenRequest:
    """The sampling settings of a request, validated; ``prompt_tokens`` already checked."""
    _integer(body, "n", 1, 1, 1)  # one choice per request
    for unsupported in ("logprobs", "top_logprobs", "tools", "functions", "suffix"):
        if body.get(unsupported) not in (None, False, [], 0):
            raise ApiError(400, f"'{unsupported}' is not supported by this server", unsupported)
    cap = limits.max_tokens_cap
    name = "max_completion_tokens" if chat and "max_completion_tokens" in body else "max_tokens"
    max_tokens = _integer(body, name, 1, cap, min(limits.default_max_tokens, cap))
    assert max_tokens is not None
    seed = _integer(body, "seed", -(2**63), 2**63 - 1, None)
    d = CHAT_DEFAULTS if chat else COMPLETION_DEFAULTS
    try:
        params = d.with_(
            temperature=_number(body, "temperature", 0.0, 2.0, d.temperature),
            top_p=_number(body, "top_p", 0.0, 1.0, d.top_p),
            presence_penalty=_number(body, "presence_penalty", -2, 2, d.presence_penalty),
            frequency_penalty=_number(body, "frequency_penalty", -2, 2, d.frequency_penalty),
        )
    except ValueError as e:  # SamplingParams' own checks, should the ranges above drift
        raise ApiError(400, str(e)) from None
    stops = _stops(body)
    return GenRequest(
        prompt_tokens,
        params,
        max_tokens,
        [*STOPS, *stops] if chat else stops,
        None if seed is None else seed % 2**64,  # numpy's generators take seeds >= 0
        limits.chat_min_chars if chat else 0,
        strip_lead=chat,
    )


def _check_length(tokens: list[int], limits: Limits, param: str) -> list[int]:
    if not tokens:
        raise ApiError(400, "the prompt is empty", param, "invalid_value")
    if len(tokens) > limits.max_prompt_tokens:
        raise ApiError(
            400,
            f"the prompt is {len(tokens)} tokens long; this server takes at most "
            f"{limits.max_prompt_tokens} (--max-prompt-tokens)",
            param,
            "context_length_exceeded",
        )
    return tokens


def completion_prompt(body: dict[str, Any], tokenizer: Any, limits: Limits) -> list[int]:
    """/v1/completions' ``prompt``: a string, a list of one string, or token ids."""
    p = body.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], str | list):
        p = p[0]
    if isinstance(p, str):
        return _check_length(tokenizer.encode(p), limits, "prompt")
    if isinstance(p, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
        bad = [t for t in p if not 0 <= t < limits.vocab_size]
        if bad:
            raise ApiError(400, f"token id {bad[0]} is outside [0, {limits.vocab_size})", "prompt")
        return _check_length(list(p), limits, "prompt")
    raise ApiError(400, "'prompt' must be a string or a list of token ids (one prompt)", "prompt")


def _content(m: dict[str, Any], i: int) -> str:
    c = m.get("content")
    if isinstance(c, str):
        return c
    if isinstance(c, list):  # content parts: only text ones
        if all(isinstance(p, dict) and p.get("type") == "text" for p in c):
            return "".join(str(p.get("text", "")) for p in c)
        raise ApiError(400, f"messages[{i}]: only text content is supported", "messages")
    raise ApiError(400, f"messages[{i}].content must be a string", "messages")


def chat_prompt(body: dict[str, Any], tokenizer: Any, limits: Limits) -> list[int]:
    """/v1/chat/completions' ``messages`` in the chat format, tokenized piece by piece."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "'messages' must be a non-empty list", "messages")
    pairs = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise ApiError(400, f"messages[{i}] must be an object", "messages")
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role not in ROLES:
            raise ApiError(
                400, f"messages[{i}].role must be one of {sorted(ROLES)}, got {role!r}", "messages"
            )
        pairs.append((str(role), _content(m, i)))
    tokens = [t for seg in conversation_segments(pairs) for t in tokenizer.encode(seg)]
    return _check_length(tokens, limits, "messages")


# -- response bodies -------------------------------------------------------------------


@dataclass
class Reply:
    """Builds the JSON objects of one response (all chunks share id and created)."""

    model: str
    chat: bool

    def __post_init__(self) -> None:
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    def _head(self, stream: bool) -> dict[str, Any]:
        kind = "chat.completion" if self.chat else "text_completion"
        obj = kind + ".chunk" if stream and self.chat else kind
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    @staticmethod
    def usage(done: Done) -> dict[str, Any]:
        return {
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": done.cached_tokens},
        }

    def whole(self, text: str, done: Done) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": done.finish_reason}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice.update(text=text, logprobs=None)
        return {**self._head(False), "choices": [choice], "usage": self.usage(done)}

    def chunk(
        self, text: str | None, finish_reason: str | None = None, first: bool = False
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice.update(text=text or "", logprobs=None)
        return {**self._head(True), "choices": [choice]}

    def usage_chunk(self, done: Done) -> dict[str, Any]:
        return {**self._head(True), "choices": [], "usage": self.usage(done)}


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "rwkv-edge"}

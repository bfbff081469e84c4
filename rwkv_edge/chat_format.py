"""The chat format the terminal chat and the server share (RWKV World style).

    System: <system text>\\n\\n          (optional)
    User: <message>\\n\\nAssistant: <reply>\\n\\nUser: ...

A reply ends at a blank line (the turn end), where the model starts a "User:"
line itself, or at end-of-text. Messages are cleaned of blank lines, since
those would end a turn early. One module, so that `rwkv-edge chat` and
`rwkv-edge serve` cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import sampling

STOPS = ("\n\n", "\nUser:")  # a blank line; a "User:" line the model writes itself
# The built-in demo model answers "Assistant:" like a Jargon File headword ("n.") and
# then a blank line; with it, a reply may end only after this many characters.
DEMO_MIN_REPLY_CHARS = 48
# Sampler settings for chat replies (sampling.CHAT, ChatRWKV's chat defaults): `rwkv-edge
# chat`'s option defaults and what `rwkv-edge serve` uses where a chat request leaves a
# setting out.
CHAT_SAMPLING: dict[str, float] = sampling.CHAT.options()
ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
REPLY_CUE = "Assistant:"


def clean_message(text: str) -> str:
    """A message as the model should see it: no blank lines (they end turns)."""
    text = text.strip().replace("\r\n", "\n")
    while "\n\n" in text:
        text = text.replace("\n\n", "\n")
    return text


def system_text(system: str) -> str:
    return f"System: {clean_message(system)}\n\n"


def turn_text(message: str) -> str:
    """A user turn and the cue for the reply: what the chat feeds for one message."""
    return f"User: {clean_message(message)}\n\n{REPLY_CUE}"


def conversation_segments(messages: Iterable[tuple[str, str]]) -> list[str]:
    """(role, content) pairs as text pieces whose concatenation is the whole prompt.

    Each piece is tokenized on its own, so the tokens of a conversation are a
    prefix of the tokens of the same conversation one turn later (the server's
    state cache relies on it): an assistant message is the cue piece, then its
    " reply\\n\\n" piece, exactly where the earlier request's prompt ended.
    """
    out: list[str] = []
    for role, content in messages:
        if role == "system":
            out.append(system_text(content))
        elif role == "assistant":
            out += [REPLY_CUE, f" {clean_message(content)}\n\n"]
        else:
            out.append(f"{ROLES[role]}: {clean_message(content)}\n\n")
    out.append(REPLY_CUE)
    return out

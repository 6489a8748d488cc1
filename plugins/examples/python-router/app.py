"""A Hotline router plugin in Python (componentize-py): direct messages to E.164 numbers,
and per-user block lists kept in the plugin's kv store.

Commands (hotline-chat command router NAME ARGS...):
  block +NUMBER     -- messages from +NUMBER to you are rejected
  unblock +NUMBER   -- undoes it
  blocked           -- the numbers you blocked, one per line
kv layout: block/<recipient>/<sender> -> empty value.
Counters: routed, rejected.

componentize-py conventions: each exported interface is a class named after it
(`Lifecycle`, `Routing`) in this module; `result<T, E>` returns T or raises `Err(E)`;
a variant case is a dataclass (`Destination_Deliver(value)`); list<u8> is `bytes`;
option<T> is T or None.
"""

import re
from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import kv, metrics
from wit_world.imports.log import Level, log
from wit_world.imports.types import (
    Command,
    Destination,
    Destination_Deliver,
    Destination_Reject,
    MessageMeta,
)

COMMANDS = "block, unblock, blocked"
MAX_LISTED = 1024

# `+`, then 7 to 15 digits, the first not 0 (as the default router).
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def is_e164(s: str) -> bool:
    return _E164.fullmatch(s) is not None


def block_key(recipient: str, sender: str) -> bytes:
    return f"block/{recipient}/{sender}".encode()


def route_one(m: MessageMeta) -> Destination:
    if not is_e164(m.to):
        return Destination_Reject(
            f'cannot deliver to "{m.to}": this router takes E.164 numbers only '
            "(+ and 7-15 digits, like +15551234567)"
        )
    if kv.get(block_key(m.to, m.from_)) is not None:
        return Destination_Reject(f"{m.to} does not accept your messages")
    return Destination_Deliver([m.to])


def count(routes: List[Destination]) -> None:
    delivered = sum(1 for r in routes if isinstance(r, Destination_Deliver))
    rejected = len(routes) - delivered
    if delivered:
        metrics.counter_add("routed", delivered)
    if rejected:
        metrics.counter_add("rejected", rejected)


def number_arg(cmd: Command, usage: str) -> str:
    if len(cmd.args) != 1:
        raise Err(f"usage: {usage}")
    n = cmd.args[0]
    if not is_e164(n):
        raise Err(f'"{n}" is not an E.164 number (+ and 7-15 digits, like +15551234567)')
    return n


class Lifecycle(exports.Lifecycle):
    def init(self, config: str) -> None:
        # Any config is accepted (and ignored).
        pass

    def handle_command(self, command: Command) -> str:
        name = command.name
        if name == "block":
            n = number_arg(command, "block +NUMBER")
            kv.set(block_key(command.from_, n), b"")
            log(Level.DEBUG, f"{command.from_} blocked {n}")
            return f"blocked {n}"
        if name == "unblock":
            n = number_arg(command, "unblock +NUMBER")
            key = block_key(command.from_, n)
            if kv.get(key) is None:
                return f"{n} was not blocked"
            kv.delete(key)
            log(Level.DEBUG, f"{command.from_} unblocked {n}")
            return f"unblocked {n}"
        if name == "blocked":
            if command.args:
                raise Err("usage: blocked")
            prefix = f"block/{command.from_}/".encode()
            keys = kv.keys(prefix, MAX_LISTED)
            if not keys:
                return "nobody is blocked"
            return "\n".join(k[len(prefix):].decode() for k in keys)
        raise Err(f'unknown command "{name}"; this router knows {COMMANDS}')


class Routing(exports.Routing):
    def route(self, message: MessageMeta) -> Destination:
        r = route_one(message)
        count([r])
        return r

    def route_batch(self, messages: List[MessageMeta]) -> List[Destination]:
        routes = [route_one(m) for m in messages]
        count(routes)
        return routes

"""{{name}}: a Hotline router plugin written in Python.

A router decides where each message goes. This one delivers a message when its address
(`to`) is an E.164 phone number and rejects anything else (such as `#group` names).
It also answers one client command, `hello`.

How Python maps to the WIT contract (wit/plugin.wit, world `router`), with componentize-py:
- Each interface the world exports is a class in this module, named after it and
  subclassing the generated protocol: `Lifecycle` (init, handle-command) and `Routing`
  (route, route-batch).
- WIT names become snake_case: `handle-command` is `handle_command`, `counter-add` is
  `counter_add`. The record field `from` is `from_` (`from` is a Python keyword).
- `result<T, E>`: return T for ok; `raise Err(e)` for an error.
- A variant case is a class: `Destination_Deliver([...])`, `Destination_Reject("...")`.
- `u32`/`u64` are `int`, `list<u8>` is `bytes`, `option<T>` is T or `None`.
- The world's imports (kv, log, clock, random, metrics) are modules in
  `wit_world.imports`. To see the whole generated API:
  componentize-py -d wit -w router bindings gen
"""

import re
from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import metrics
from wit_world.imports.log import Level, log
from wit_world.imports.types import (
    Command,
    Destination,
    Destination_Deliver,
    Destination_Reject,
    MessageMeta,
)

NAME = "{{name}}"

# E.164: `+`, then 7 to 15 digits, the first not 0.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def is_e164(s: str) -> bool:
    return E164.fullmatch(s) is not None


def route_one(m: MessageMeta) -> Destination:
    """Where one message goes. Counts it as routed or rejected."""
    if is_e164(m.to):
        metrics.counter_add("routed", 1)
        return Destination_Deliver([m.to])
    metrics.counter_add("rejected", 1)
    return Destination_Reject(f'cannot deliver to "{m.to}": {NAME} routes E.164 numbers only')


class Lifecycle(exports.Lifecycle):
    def init(self, config: str) -> None:
        # Called on every new instance, with the slot's config text (may be empty).
        # Any config is accepted. Raising Err(...) here would refuse the version.
        log(Level.INFO, f"{NAME} started")

    def handle_command(self, command: Command) -> str:
        # `hotline-chat command router NAME ARGS...` lands here. The returned text, or
        # the Err's text, is what the client sees.
        if command.name == "hello":
            return "hello from {{name}} ({{lang}} {{slot}})"
        raise Err(f'unknown command "{command.name}"; {NAME} knows: hello')


class Routing(exports.Routing):
    def route(self, message: MessageMeta) -> Destination:
        return route_one(message)

    def route_batch(self, messages: List[MessageMeta]) -> List[Destination]:
        # The broker batches pipelined sends: one answer per message, in order.
        return [route_one(m) for m in messages]

"""{{name}}: a Hotline receipts plugin written in Python.

A receipts plugin decides whether a receipt ("delivered" or "read") reaches the sender of
the message. This one lets every receipt through and counts them. It also answers one
client command, `hello`.

How Python maps to the WIT contract (wit/plugin.wit, world `receipts`), with componentize-py:
- Each interface the world exports is a class in this module, named after it and
  subclassing the generated protocol: `Lifecycle` (init, handle-command) and `Receipting`
  (allow).
- WIT names become snake_case: `handle-command` is `handle_command`, `message-id` is
  `message_id`. The record field `from` is `from_` (`from` is a Python keyword).
- `result<T, E>`: return T for ok; `raise Err(e)` for an error.
- A WIT enum is a Python Enum: `ReceiptStatus.DELIVERED`, `ReceiptStatus.READ`.
- `u32`/`u64` are `int`, `list<u8>` is `bytes`, `option<T>` is T or `None`.
- The world's imports (kv, log, clock, random, metrics) are modules in
  `wit_world.imports`. To see the whole generated API:
  componentize-py -d wit -w receipts bindings gen
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import metrics
from wit_world.imports.log import Level, log
from wit_world.imports.types import Command, ReceiptMeta

NAME = "{{name}}"


class Lifecycle(exports.Lifecycle):
    def init(self, config: str) -> None:
        # Called on every new instance, with the slot's config text (may be empty).
        # Any config is accepted. Raising Err(...) here would refuse the version.
        log(Level.INFO, f"{NAME} started")

    def handle_command(self, command: Command) -> str:
        # `hotline-chat command receipts NAME ARGS...` lands here. The returned text, or
        # the Err's text, is what the client sees.
        if command.name == "hello":
            return "hello from {{name}} ({{lang}} {{slot}})"
        raise Err(f'unknown command "{command.name}"; {NAME} knows: hello')


class Receipting(exports.Receipting):
    def allow(self, receipt: ReceiptMeta) -> bool:
        # receipt.status is ReceiptStatus.DELIVERED or .READ; receipt.by read or got the
        # message, receipt.to sent it. True: the receipt reaches receipt.to.
        metrics.counter_add("allowed", 1)
        return True

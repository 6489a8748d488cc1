"""A Hotline receipts plugin in Python (componentize-py): delivered receipts always reach
the sender, read receipts never do (a "no blue ticks" policy for the whole broker).

Command (hotline-chat command receipts NAME):
  policy  -- answers the policy in words
Counters: delivered_receipts, read_receipts_dropped.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import metrics
from wit_world.imports.types import Command, ReceiptMeta, ReceiptStatus

POLICY = "delivered receipts: always; read receipts: never"


class Lifecycle(exports.Lifecycle):
    def init(self, config: str) -> None:
        # Any config is accepted (and ignored).
        pass

    def handle_command(self, command: Command) -> str:
        if command.name == "policy" and not command.args:
            return POLICY
        raise Err(f'unknown command "{command.name}"; this receipts plugin knows: policy')


class Receipting(exports.Receipting):
    def allow(self, receipt: ReceiptMeta) -> bool:
        if receipt.status == ReceiptStatus.DELIVERED:
            metrics.counter_add("delivered_receipts", 1)
            return True
        metrics.counter_add("read_receipts_dropped", 1)
        return False

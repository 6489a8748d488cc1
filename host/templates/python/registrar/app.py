"""{{name}}: a Hotline registrar plugin written in Python.

A registrar decides who may register a phone number. This one sends a 6-digit code by
SMS, valid for 10 minutes; 5 wrong tries use the code up. It also answers one client
command, `hello`.

kv layout: `code/<phone>` -> `<code>:<expires_ms>:<wrong attempts>` (UTF-8 text).
Counters: `codes_sent`, `verified`.

How Python maps to the WIT contract (wit/plugin.wit, world `registrar`), with componentize-py:
- Each interface the world exports is a class in this module, named after it and
  subclassing the generated protocol: `Lifecycle` (init, handle-command) and
  `Registration` (request-code, verify-code).
- WIT names become snake_case: `request-code` is `request_code`, `next-u64` is
  `next_u64`. The record field `from` is `from_` (`from` is a Python keyword).
- `result<T, E>`: return T for ok; `raise Err(e)` for an error. An imported function that
  returns a result (`sms.send`) raises `Err` too; its error is in `.value`.
- A WIT enum is a Python Enum (`RefusalKind.WRONG_CODE`); a record is a dataclass
  (`Refusal(kind, reason)`).
- `u32`/`u64` are `int`, `list<u8>` is `bytes`, `option<T>` is T or `None`.
- The world's imports (kv, log, clock, random, metrics, sms) are modules in
  `wit_world.imports`. To see the whole generated API:
  componentize-py -d wit -w registrar bindings gen
"""

import re
from typing import Optional, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import clock, kv, metrics, sms
from wit_world.imports import random as host_random  # the broker's secure generator
from wit_world.imports.log import Level, log
from wit_world.imports.types import Command, Refusal, RefusalKind

NAME = "{{name}}"

CODE_TTL_SECS = 600  # what request-code answers: how long a code is valid
MAX_ATTEMPTS = 5  # wrong codes allowed before the code is used up

# E.164: `+`, then 7 to 15 digits, the first not 0.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def is_e164(s: str) -> bool:
    return E164.fullmatch(s) is not None


def refuse(kind: RefusalKind, reason: str) -> Err:
    """The error to raise for a refusal; the person registering sees `reason`."""
    return Err(Refusal(kind=kind, reason=reason))


def key(phone: str) -> bytes:
    return f"code/{phone}".encode()


def save(phone: str, code: str, expires_ms: int, attempts: int) -> None:
    kv.set(key(phone), f"{code}:{expires_ms}:{attempts}".encode())


def load(phone: str) -> Optional[Tuple[str, int, int]]:
    """(code, expires_ms, attempts) of the pending code for `phone`, or None."""
    value = kv.get(key(phone))
    if value is None:
        return None
    code, expires_ms, attempts = value.decode().split(":")
    return code, int(expires_ms), int(attempts)


class Lifecycle(exports.Lifecycle):
    def init(self, config: str) -> None:
        # Called on every new instance, with the slot's config text (may be empty).
        # Any config is accepted. Raising Err(...) here would refuse the version.
        log(Level.INFO, f"{NAME} started")

    def handle_command(self, command: Command) -> str:
        # `hotline-chat command registrar NAME ARGS...` lands here. The returned text, or
        # the Err's text, is what the client sees.
        if command.name == "hello":
            return "hello from {{name}} ({{lang}} {{slot}})"
        raise Err(f'unknown command "{command.name}"; {NAME} knows: hello')


class Registration(exports.Registration):
    def request_code(self, phone: str) -> int:
        if not is_e164(phone):
            raise refuse(RefusalKind.REJECTED, f"{phone} is not an E.164 number")
        code = str(100000 + host_random.next_u64() % 900000)  # 6 digits
        save(phone, code, clock.now_ms() + CODE_TTL_SECS * 1000, 0)
        try:
            sms.send(phone, f"Your {NAME} code is {code}. It expires in 10 minutes.")
        except Err as e:
            kv.delete(key(phone))
            log(Level.WARN, f"SMS to {phone} failed: {e.value}")
            raise refuse(RefusalKind.UNAVAILABLE, f"could not send the SMS: {e.value}")
        metrics.counter_add("codes_sent", 1)
        return CODE_TTL_SECS

    def verify_code(self, phone: str, code: str) -> None:
        pending = load(phone)
        expired = refuse(
            RefusalKind.CODE_EXPIRED, f"no code was requested for {phone}, or it expired"
        )
        if pending is None:
            raise expired
        sent, expires_ms, attempts = pending
        if clock.now_ms() >= expires_ms:
            kv.delete(key(phone))
            raise expired
        if code == sent:
            kv.delete(key(phone))  # a code works once
            metrics.counter_add("verified", 1)
            return
        attempts += 1
        if attempts >= MAX_ATTEMPTS:
            kv.delete(key(phone))
            raise refuse(RefusalKind.RATE_LIMITED, "too many wrong codes; request a new one")
        save(phone, sent, expires_ms, attempts)
        raise refuse(RefusalKind.WRONG_CODE, "wrong code")

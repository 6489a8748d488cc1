// {{name}}: a Hotline registrar plugin written in JavaScript.
//
// A registrar decides who may register a phone number. This one sends a 6-digit code by
// SMS, valid for 10 minutes; 5 wrong tries use the code up. It also answers one client
// command, `hello`.
//
// kv layout: `code/<phone>` -> `<code>:<expires_ms>:<wrong attempts>` (UTF-8 text).
// Counters: `codes_sent`, `verified`.
//
// How JavaScript maps to the WIT contract (wit/plugin.wit, world `registrar`), with
// componentize-js:
// - Each interface the world exports is an exported object named after it in camelCase,
//   with camelCase methods: `lifecycle` (init, handleCommand), `registration`
//   (requestCode, verifyCode).
// - Each interface the world imports is an ES module: 'hotline:plugin/kv@{{api_version}}' etc.
// - `result<T, E>`: return T for ok; `throw e` for an error. A registrar's error is a
//   refusal record, `{ kind: 'wrong-code', reason: '...' }`. An imported function that
//   returns a result (`sms.send`) throws on error.
// - An enum case is a string ('info', 'code-expired'); `u64` is a BigInt (`nowMs()`,
//   `nextU64()`, `1n`); `u32` is a Number; `list<u8>` is a Uint8Array; `option<T>` is T
//   or undefined.
// - There is no console: log with the `log` import.

import { nowMs } from 'hotline:plugin/clock@{{api_version}}';
import * as kv from 'hotline:plugin/kv@{{api_version}}';
import { log } from 'hotline:plugin/log@{{api_version}}';
import { counterAdd } from 'hotline:plugin/metrics@{{api_version}}';
import { nextU64 } from 'hotline:plugin/random@{{api_version}}';
import { send } from 'hotline:plugin/sms@{{api_version}}';

const NAME = '{{name}}';

const CODE_TTL_SECS = 600; // what requestCode answers: how long a code is valid
const MAX_ATTEMPTS = 5; // wrong codes allowed before the code is used up

const enc = new TextEncoder();
const dec = new TextDecoder();

/** E.164: `+`, then 7 to 15 digits, the first not 0. */
function isE164(s) {
  return /^\+[1-9][0-9]{6,14}$/.test(s);
}

/** A refusal to throw; the person registering sees `reason`. */
function refusal(kind, reason) {
  return { kind, reason };
}

function key(phone) {
  return enc.encode(`code/${phone}`);
}

function save(phone, code, expiresMs, attempts) {
  kv.set(key(phone), enc.encode(`${code}:${expiresMs}:${attempts}`));
}

/** The pending code for `phone` as { code, expiresMs (BigInt), attempts }, or undefined. */
function load(phone) {
  const value = kv.get(key(phone));
  if (value === undefined) return undefined;
  const [code, expiresMs, attempts] = dec.decode(value).split(':');
  return { code, expiresMs: BigInt(expiresMs), attempts: Number(attempts) };
}

/** The text of an error thrown by an import (the binding may wrap it in `payload`). */
function errorText(e) {
  return String(e !== null && typeof e === 'object' && 'payload' in e ? e.payload : e);
}

export const lifecycle = {
  // Called on every new instance, with the slot's config text (may be empty).
  // Any config is accepted. Throwing here would refuse the version.
  init(config) {
    log('info', `${NAME} started`);
  },

  // `hotline-chat command registrar NAME ARGS...` lands here. The returned text, or the
  // thrown text, is what the client sees.
  handleCommand(cmd) {
    if (cmd.name === 'hello') return 'hello from {{name}} ({{lang}} {{slot}})';
    throw `unknown command "${cmd.name}"; ${NAME} knows: hello`;
  },
};

export const registration = {
  requestCode(phone) {
    if (!isE164(phone)) throw refusal('rejected', `${phone} is not an E.164 number`);
    const code = String(100000n + (nextU64() % 900000n)); // 6 digits
    save(phone, code, nowMs() + BigInt(CODE_TTL_SECS * 1000), 0);
    try {
      send(phone, `Your ${NAME} code is ${code}. It expires in 10 minutes.`);
    } catch (e) {
      kv.delete(key(phone));
      log('warn', `SMS to ${phone} failed: ${errorText(e)}`);
      throw refusal('unavailable', `could not send the SMS: ${errorText(e)}`);
    }
    counterAdd('codes_sent', 1n);
    return CODE_TTL_SECS;
  },

  verifyCode(phone, code) {
    const pending = load(phone);
    const expired = refusal('code-expired', `no code was requested for ${phone}, or it expired`);
    if (pending === undefined) throw expired;
    if (nowMs() >= pending.expiresMs) {
      kv.delete(key(phone));
      throw expired;
    }
    if (code === pending.code) {
      kv.delete(key(phone)); // a code works once
      counterAdd('verified', 1n);
      return;
    }
    const attempts = pending.attempts + 1;
    if (attempts >= MAX_ATTEMPTS) {
      kv.delete(key(phone));
      throw refusal('rate-limited', 'too many wrong codes; request a new one');
    }
    save(phone, pending.code, pending.expiresMs, attempts);
    throw refusal('wrong-code', 'wrong code');
  },
};

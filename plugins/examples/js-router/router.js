// A Hotline router plugin in JavaScript (componentize-js): direct messages to E.164
// numbers, and per-user block lists kept in the plugin's kv store.
//
// Commands (hotline-chat command router NAME ARGS…):
//   block +NUMBER     — messages from +NUMBER to you are rejected
//   unblock +NUMBER   — undoes it
//   blocked           — the numbers you blocked, one per line
// kv layout: block/<recipient>/<sender> -> empty value.
// Counters: routed, rejected.
//
// Binding conventions (jco/componentize-js): interface exports are objects named after
// the interface in camelCase; list<u8> is a Uint8Array; option<T> is T or undefined;
// a variant is { tag, val }; result<T, E> returns T or throws E.

import * as kv from 'hotline:plugin/kv@0.1.0';
import { log } from 'hotline:plugin/log@0.1.0';
import { counterAdd } from 'hotline:plugin/metrics@0.1.0';

const COMMANDS = 'block, unblock, blocked';
const MAX_LISTED = 1024;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** `+`, then 7 to 15 digits, the first not 0 (as the default router). */
function isE164(s) {
  return /^\+[1-9][0-9]{6,14}$/.test(s);
}

function blockKey(recipient, sender) {
  return enc.encode(`block/${recipient}/${sender}`);
}

function routeOne(m) {
  if (!isE164(m.to)) {
    return {
      tag: 'reject',
      val: `cannot deliver to "${m.to}": this router takes E.164 numbers only (+ and 7-15 digits, like +15551234567)`,
    };
  }
  if (kv.get(blockKey(m.to, m.from)) !== undefined) {
    return { tag: 'reject', val: `${m.to} does not accept your messages` };
  }
  return { tag: 'deliver', val: [m.to] };
}

function count(routes) {
  const delivered = routes.filter((r) => r.tag === 'deliver').length;
  const rejected = routes.length - delivered;
  if (delivered > 0) counterAdd('routed', BigInt(delivered));
  if (rejected > 0) counterAdd('rejected', BigInt(rejected));
}

function numberArg(cmd, usage) {
  if (cmd.args.length !== 1) throw `usage: ${usage}`;
  const n = cmd.args[0];
  if (!isE164(n)) throw `"${n}" is not an E.164 number (+ and 7-15 digits, like +15551234567)`;
  return n;
}

export const lifecycle = {
  init(_config) {
    // Any config is accepted (and ignored).
  },

  handleCommand(cmd) {
    switch (cmd.name) {
      case 'block': {
        const n = numberArg(cmd, 'block +NUMBER');
        kv.set(blockKey(cmd.from, n), new Uint8Array(0));
        log('debug', `${cmd.from} blocked ${n}`);
        return `blocked ${n}`;
      }
      case 'unblock': {
        const n = numberArg(cmd, 'unblock +NUMBER');
        const key = blockKey(cmd.from, n);
        if (kv.get(key) === undefined) return `${n} was not blocked`;
        kv.delete(key);
        log('debug', `${cmd.from} unblocked ${n}`);
        return `unblocked ${n}`;
      }
      case 'blocked': {
        if (cmd.args.length !== 0) throw 'usage: blocked';
        const prefix = `block/${cmd.from}/`;
        const keys = kv.keys(enc.encode(prefix), MAX_LISTED);
        if (keys.length === 0) return 'nobody is blocked';
        return keys.map((k) => dec.decode(k).slice(prefix.length)).join('\n');
      }
      default:
        throw `unknown command "${cmd.name}"; this router knows ${COMMANDS}`;
    }
  },
};

export const routing = {
  route(message) {
    const r = routeOne(message);
    count([r]);
    return r;
  },

  routeBatch(messages) {
    const routes = messages.map(routeOne);
    count(routes);
    return routes;
  },
};

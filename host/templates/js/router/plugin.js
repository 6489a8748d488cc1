// {{name}}: a Hotline router plugin written in JavaScript.
//
// A router decides where each message goes. This one delivers a message when its address
// (`to`) is an E.164 phone number and rejects anything else (such as `#group` names).
// It also answers one client command, `hello`.
//
// How JavaScript maps to the WIT contract (wit/plugin.wit, world `router`), with
// componentize-js:
// - Each interface the world exports is an exported object named after it in camelCase,
//   with camelCase methods: `lifecycle` (init, handleCommand), `routing` (route, routeBatch).
// - Each interface the world imports is an ES module: 'hotline:plugin/kv@{{api_version}}' etc.
// - `result<T, E>`: return T for ok; `throw e` for an error (a plain string here).
// - A variant is `{ tag, val }`: `{ tag: 'deliver', val: [...] }`, `{ tag: 'reject', val: '...' }`.
// - An enum case is a string ('info'); `u64` is a BigInt (`1n`); `list<u8>` is a
//   Uint8Array; `option<T>` is T or undefined.
// - There is no console: log with the `log` import.

import { log } from 'hotline:plugin/log@{{api_version}}';
import { counterAdd } from 'hotline:plugin/metrics@{{api_version}}';

const NAME = '{{name}}';

/** E.164: `+`, then 7 to 15 digits, the first not 0. */
function isE164(s) {
  return /^\+[1-9][0-9]{6,14}$/.test(s);
}

/** Where one message goes. Counts it as routed or rejected. */
function routeOne(m) {
  if (isE164(m.to)) {
    counterAdd('routed', 1n);
    return { tag: 'deliver', val: [m.to] };
  }
  counterAdd('rejected', 1n);
  return { tag: 'reject', val: `cannot deliver to "${m.to}": ${NAME} routes E.164 numbers only` };
}

export const lifecycle = {
  // Called on every new instance, with the slot's config text (may be empty).
  // Any config is accepted. Throwing here would refuse the version.
  init(config) {
    log('info', `${NAME} started`);
  },

  // `hotline-chat command router NAME ARGS...` lands here. The returned text, or the
  // thrown text, is what the client sees.
  handleCommand(cmd) {
    if (cmd.name === 'hello') return 'hello from {{name}} ({{lang}} {{slot}})';
    throw `unknown command "${cmd.name}"; ${NAME} knows: hello`;
  },
};

export const routing = {
  route(message) {
    return routeOne(message);
  },

  // The broker batches pipelined sends: one answer per message, in order.
  routeBatch(messages) {
    return messages.map(routeOne);
  },
};

// {{name}}: a Hotline receipts plugin written in JavaScript.
//
// A receipts plugin decides whether a receipt ("delivered" or "read") reaches the sender
// of the message. This one lets every receipt through and counts them. It also answers
// one client command, `hello`.
//
// How JavaScript maps to the WIT contract (wit/plugin.wit, world `receipts`), with
// componentize-js:
// - Each interface the world exports is an exported object named after it in camelCase,
//   with camelCase methods: `lifecycle` (init, handleCommand), `receipting` (allow).
// - Each interface the world imports is an ES module: 'hotline:plugin/kv@{{api_version}}' etc.
// - `result<T, E>`: return T for ok; `throw e` for an error (a plain string here).
// - A record is an object with camelCase fields (`receipt.messageId`); an enum case is a
//   string (`receipt.status` is 'delivered' or 'read').
// - `u64` is a BigInt (`1n`); `list<u8>` is a Uint8Array; `option<T>` is T or undefined.
// - There is no console: log with the `log` import.

import { log } from 'hotline:plugin/log@{{api_version}}';
import { counterAdd } from 'hotline:plugin/metrics@{{api_version}}';

const NAME = '{{name}}';

export const lifecycle = {
  // Called on every new instance, with the slot's config text (may be empty).
  // Any config is accepted. Throwing here would refuse the version.
  init(config) {
    log('info', `${NAME} started`);
  },

  // `hotline-chat command receipts NAME ARGS...` lands here. The returned text, or the
  // thrown text, is what the client sees.
  handleCommand(cmd) {
    if (cmd.name === 'hello') return 'hello from {{name}} ({{lang}} {{slot}})';
    throw `unknown command "${cmd.name}"; ${NAME} knows: hello`;
  },
};

export const receipting = {
  // receipt.by read or got the message, receipt.to sent it. true: the receipt reaches
  // receipt.to.
  allow(receipt) {
    counterAdd('allowed', 1n);
    return true;
  },
};

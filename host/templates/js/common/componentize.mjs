// Builds out/{{slot}}.wasm from plugin.js with componentize-js's componentize() API
// (run by build.sh; `jco componentize` fails on Node 20, the API works).
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'out', '{{slot}}.wasm');

const { component } = await componentize({
  sourcePath: join(here, 'plugin.js'),
  witPath: join(here, 'wit'),
  worldName: '{{slot}}',
  // No WASI features: no console, timers, Math.random or fetch. The world's own imports
  // (kv, log, clock, random, metrics...) are all a plugin needs, and the broker grants
  // nothing through WASI anyway. The component then imports only hotline:plugin.
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);

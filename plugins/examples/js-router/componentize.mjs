// Builds router.wasm from router.js with componentize-js's componentize() API
// (the `jco componentize` command failed on Node 20 on this kind of machine).
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ? resolve(process.argv[2]) : join(here, 'router.wasm');

const started = Date.now();
const { component } = await componentize({
  sourcePath: join(here, 'router.js'),
  witPath: resolve(here, '../../../wit/0.1.0'),
  worldName: 'router',
  // No WASI features: no console, no timers, no fetch. The world's own imports are all the
  // plugin needs; the broker would grant nothing through WASI anyway.
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} bytes) in ${((Date.now() - started) / 1000).toFixed(1)} s`);

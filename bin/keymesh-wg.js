#!/usr/bin/env node
// keymesh as wg-quick's userspace implementation (src/cli/wg.ts). The V8 flag: see bin/keymesh.js.
import v8 from 'node:v8';
v8.setFlagsFromString('--no-lazy-feedback-allocation');
const { main } = await import('../dist/src/cli/wg.js');
main(process.argv.slice(2));

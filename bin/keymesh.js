#!/usr/bin/env node
// V8 allocates a function's type-feedback vector only after its first few calls, so branches the
// start-up warm-up (src/io/warmup.ts) runs once or twice — a handshake, a dropped packet — leave no
// feedback, and the code optimized during the warm-up is thrown away when real traffic takes them.
// Set before any of keymesh is loaded (NODE_OPTIONS does not accept V8 flags).
import v8 from 'node:v8';
v8.setFlagsFromString('--no-lazy-feedback-allocation');
await import('../dist/src/cli/main.js');

#!/usr/bin/env -S node --max-semi-space-size=8
// The `concord` binary: runs the compiled CLI (npm run build produces dist/). The first line's
// node flags are src/cli/serving-flags.ts's SERVING_NODE_FLAGS (a test keeps them equal).
await import('../dist/src/cli/concord.js');

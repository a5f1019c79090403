#!/usr/bin/env node
// The `concordctl` binary: runs the compiled CLI (npm run build produces dist/).
await import('../dist/src/cli/concordctl.js');

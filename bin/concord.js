#!/usr/bin/env node
// The `concord` binary: runs the compiled CLI (npm run build produces dist/).
await import('../dist/src/cli/concord.js');

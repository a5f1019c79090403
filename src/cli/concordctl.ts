// The concordctl entry point: runs one command with the process's argv and streams, exits with
// its code. SIGINT/SIGTERM end long-running commands (watch, lock, elect) cleanly.

import { runConcordctl } from './concordctl/main.js';

const controller = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => controller.abort());

const code = await runConcordctl(
  process.argv.slice(2),
  {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    stdin: process.stdin,
  },
  controller.signal,
);
process.exitCode = code;
// The client is closed; exit once stdout is flushed even if stdin is still open.
process.stdout.write('', () => process.exit(code));

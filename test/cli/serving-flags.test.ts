import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SERVING_NODE_FLAGS } from '../../src/cli/serving-flags.js';

// <build>/test/cli → the repository root, where bin/ lives (dist/ or .build/<name>/ alike).
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const binConcord = `${repoRoot}bin/concord.js`;

test('bin/concord.js starts node with the serving flags the launchers use', () => {
  const firstLine = readFileSync(binConcord, 'utf8').split('\n', 1)[0]!;
  assert.equal(firstLine, `#!/usr/bin/env -S node ${SERVING_NODE_FLAGS.join(' ')}`);
});

test('the serving flags halve the young generation a busy member grows to', () => {
  // Allocates like a member under load (many short-lived objects, some surviving a while), then
  // reports how large V8 let the new space grow.
  const probe =
    "const v8 = require('node:v8'); let keep = [];" +
    'for (let i = 0; i < 3e6; i++) { keep.push({ a: i, b: [i] }); if (keep.length > 200000) keep = []; }' +
    "console.log(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size)";
  const newSpaceBytes = (flags: readonly string[]) => {
    const run = spawnSync(process.execPath, [...flags, '-e', probe], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    return Number(run.stdout.trim());
  };
  const byDefault = newSpaceBytes([]);
  const serving = newSpaceBytes(SERVING_NODE_FLAGS);
  assert.ok(serving <= 16 * 1024 * 1024, `new space ${serving} bytes with the serving flags`);
  assert.ok(serving * 2 <= byDefault, `serving ${serving} vs default ${byDefault} bytes`);
});

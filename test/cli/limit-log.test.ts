import assert from 'node:assert/strict';
import { test } from 'node:test';
import { limitRefusalLogger } from '../../src/cli/limit-log.js';
import type { Logger } from '../../src/util/logger.js';

test('limit refusals log the first one, then one line per interval per limit with the count since', () => {
  const lines: Array<[string, Record<string, unknown> | undefined]> = [];
  const log: Logger = {
    debug() {},
    info() {},
    warn: (msg, fields) => lines.push([msg, fields]),
    error() {},
  };
  let nowMs = 0;
  const refused = limitRefusalLogger(log, 1000, () => nowMs);
  refused('connections');
  for (let i = 0; i < 5; i++) refused('connections');
  refused('watchers-per-stream');
  nowMs = 1500;
  refused('connections');
  assert.deepEqual(
    lines.map(([, fields]) => fields),
    [
      { limit: '--max-client-connections', refused: 1 },
      { limit: '--max-watchers-per-stream', refused: 1 },
      { limit: '--max-client-connections', refused: 6 },
    ],
  );
  assert.match(lines[0]![0], /client limit refused/);
});

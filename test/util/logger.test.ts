// The logger writes etcd's zap-shaped lines: level, ts, caller, msg first, then the member's
// context and the event's fields; text on terminals; --log-level filters; files are appended.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLogger, type LogSink, sinksFor } from '../../src/util/logger.js';

function memorySink(isTty = false): LogSink & { lines: string[] } {
  const lines: string[] = [];
  return { lines, isTty, write: (line) => lines.push(line) };
}

test('JSON lines carry level, ts, caller, msg, then context and fields, in that order', () => {
  const sink = memorySink();
  const log = createLogger({
    level: 'info',
    base: { name: 'm1' },
    context: () => ({ 'local-member-id': 'abc', term: 3, index: 7 }),
    sinks: [sink],
  });
  log.info('became leader', { term: 4, big: 5n, error: new Error('boom') });
  assert.equal(sink.lines.length, 1);
  const line = sink.lines[0]!;
  assert.ok(line.endsWith('\n'));
  const record = JSON.parse(line) as Record<string, unknown>;
  assert.deepEqual(Object.keys(record).slice(0, 4), ['level', 'ts', 'caller', 'msg']);
  assert.equal(record.level, 'info');
  assert.match(String(record.ts), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.match(String(record.caller), /logger\.test\.js:\d+$/, 'the caller is the line that logged');
  assert.equal(record.msg, 'became leader');
  assert.equal(record.name, 'm1');
  assert.equal(record['local-member-id'], 'abc');
  assert.equal(record.term, 4, 'the event field wins over the context');
  assert.equal(record.index, 7);
  assert.equal(record.big, '5');
  assert.equal(record.error, 'boom');
});

test('--log-level drops lines below it', () => {
  const sink = memorySink();
  const log = createLogger({ level: 'warn', sinks: [sink] });
  log.debug('a');
  log.info('b');
  log.warn('c');
  log.error('d');
  assert.deepEqual(
    sink.lines.map((l) => (JSON.parse(l) as { msg: string }).msg),
    ['c', 'd'],
  );
});

test('a terminal gets one readable text line per record', () => {
  const sink = memorySink(true);
  createLogger({ level: 'info', sinks: [sink] }).warn('apply request took too long', { took: '120ms' });
  assert.match(
    sink.lines[0]!,
    /^\S+Z WARN {2}\S*logger\.test\.js:\d+ {2}apply request took too long {2}took=120ms\n$/,
  );
});

test('--log-outputs appends to files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'concord-log-'));
  try {
    const path = join(dir, 'member.log');
    const sinks = sinksFor([path]);
    const log = createLogger({ level: 'info', sinks });
    log.info('one');
    log.info('two');
    for (const sink of sinks) sink.close?.();
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { msg: string }).msg),
      ['one', 'two'],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

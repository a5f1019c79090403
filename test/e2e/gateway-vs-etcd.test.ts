// The JSON gateway against etcd 3.4's grpc-gateway, byte for byte. The same requests (unary and
// streaming, well-formed and not) go to a fresh one-member etcd and a fresh one-member Concord
// over raw sockets; the answers are compared as status line, header lines (names, casing and
// order), framing (Content-Length or chunked, chunk by chunk), body text and trailers.
//
// What is normalised, and why:
//  - the Date header's value (the clock);
//  - cluster_id, member_id and raft_term, and member names/URLs/IDs in member lists (each server
//    picks its own);
//  - the remaining TTL of a lease in timetolive (a clock), and everything in maintenance/status
//    but its shape (versions, sizes, raft indexes);
//  - Content-Length's value and chunk sizes are checked against the bytes that follow them by the
//    parser, then compared through the chunk texts (the IDs above have different lengths);
//  - the order of a stream's messages across different watch IDs (etcd keeps it per watcher only).
// Revisions are compared as they are: both stores start at revision 1 and see the same writes.
//
// etcd's Go HTTP server holds the whole answer to a streaming call until the request body has
// ended (it reads a body that the handler has not finished before writing headers), so these
// requests always end their bodies; Concord answers each message as it arrives (see
// docs/compatibility.md).
//
// GATEWAY_SEEDS (comma-separated) replaces the seeds of the generated sequences; a failure prints
// the seed and the step.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startConcordCluster } from '../support/cluster.js';
import { etcdAvailable, startEtcdCluster } from '../support/etcd-cluster.js';
import type { ProcessCluster } from '../support/process-cluster.js';
import {
  parseRawResponse,
  type RawReadOptions,
  type RawRequest,
  type RawResponse,
  rawExchange,
} from '../support/raw-http.js';
import { generateCases } from './gateway-generator.js';

const b64 = (text: string) => Buffer.from(text).toString('base64');

interface Case {
  name: string;
  request: RawRequest;
  /** A stream that stays open: read until quiet instead of until the end. */
  stream?: boolean;
  /** Extra normalisation of the body text for this case. */
  normalise?: (text: string) => string;
}

const unaryRead = { quietMs: 1500, totalMs: 5000 };
const streamRead = { quietMs: 400, totalMs: 2500 };

const post = (path: string, body: string | string[], headers?: Array<[string, string]>): RawRequest => ({
  method: 'POST',
  path,
  body,
  headers,
});
const postJson = (path: string, body: unknown): RawRequest => post(path, JSON.stringify(body));

function normaliseBody(text: string): string {
  return text
    .replace(/"(cluster_id|member_id|raft_term)":"\d+"/g, '"$1":"<$1>"')
    .replace(/"(raftTerm|raft_term)":"\d+"/g, '"$1":"<term>"');
}

const normaliseTimeToLive = (text: string) => text.replace(/"TTL":"\d+"/, '"TTL":"<remaining>"');

const seeds = (process.env.GATEWAY_SEEDS ?? '1,2,3').split(',').map(Number);
const stepsPerSeed = 40;

const normaliseMembers = (text: string) =>
  text
    .replace(/"ID":"\d+"/g, '"ID":"<id>"')
    .replace(/"name":"[^"]*"/g, '"name":"<name>"')
    .replace(/http:\/\/127\.0\.0\.1:\d+/g, '<url>');

const normaliseStatus = (text: string) =>
  text.replace(
    /"(version|dbSize|leader|raftIndex|raftTerm|raftAppliedIndex|dbSizeInUse)":"[^"]*"/g,
    '"$1":"<$1>"',
  );

/**
 * The chunks grouped by stream message (a message ends with its newline, which Go may send as a
 * chunk of its own), stably ordered by watch ID: etcd orders a stream's messages per watcher only
 * (its catch-up of several new watchers runs in map order), so only that order is compared.
 */
function orderedMessages(chunks: string[]): string[][] {
  const messages: string[][] = [];
  let current: string[] = [];
  for (const chunk of chunks) {
    current.push(chunk);
    if (chunk.endsWith('\n')) {
      messages.push(current);
      current = [];
    }
  }
  if (current.length > 0) messages.push(current);
  const watchId = (message: string[]) => {
    const text = message.join('');
    if (!text.startsWith('{"result":')) return 0;
    return Number(/^\{"result":\{"header":\{[^}]*\},"watch_id":"(\d+)"/.exec(text)?.[1] ?? 0);
  };
  return messages
    .map((message, index) => ({ message, index, id: watchId(message) }))
    .sort((a, b) => a.id - b.id || a.index - b.index)
    .map(({ message }) => message);
}

/** The comparable text of one answer; framing errors make it differ from any good answer. */
export function describeResponse(response: RawResponse, normalise?: (text: string) => string): string {
  const lines = [response.statusLine];
  for (const [name, value] of response.headers) {
    const shown = name === 'Date' ? '<date>' : name.toLowerCase() === 'content-length' ? '<length>' : value;
    lines.push(`${name}: ${shown}`);
  }
  lines.push(`-- ${response.framing}${response.complete ? '' : ' (still open)'}`);
  for (const message of orderedMessages(response.chunks)) {
    for (const chunk of message) {
      const text = normaliseBody(chunk);
      lines.push(`[${normalise ? normalise(text) : text}]`);
    }
  }
  for (const [name, value] of response.trailers) lines.push(`trailer ${name}: ${value}`);
  for (const error of response.errors) lines.push(`FRAMING ERROR ${error}`);
  return lines.join('\n');
}

async function exchange(url: string, testCase: Case, read?: RawReadOptions): Promise<string> {
  const bytes = await rawExchange(url, testCase.request, read ?? (testCase.stream ? streamRead : unaryRead));
  return describeResponse(parseRawResponse(bytes), testCase.normalise);
}

const fixedCases: Case[] = [
  // Unary calls that succeed.
  { name: 'put', request: postJson('/v3/kv/put', { key: b64('a'), value: b64('1') }) },
  { name: 'put prev_kv', request: postJson('/v3/kv/put', { key: b64('a'), value: b64('2'), prev_kv: true }) },
  { name: 'range', request: postJson('/v3/kv/range', { key: b64('a') }) },
  { name: 'range via /v3beta', request: postJson('/v3beta/kv/range', { key: b64('a') }) },
  { name: 'range with a query string', request: postJson('/v3/kv/range?x=1', { key: b64('a') }) },
  {
    name: 'range, camelCase wins over snake_case',
    request: post('/v3/kv/range', '{"key":"YQ==","keys_only":true,"keysOnly":false}'),
  },
  {
    name: 'range, unknown fields ignored',
    request: post('/v3/kv/range', '{"key":"YQ==","nope":{"x":[1,2]}}'),
  },
  {
    name: 'range, int64 as a number and as a string',
    request: post('/v3/kv/range', '{"key":"YQ==","limit":1,"revision":"2"}'),
  },
  {
    name: 'range, enum by name and by number',
    request: post('/v3/kv/range', '{"key":"YQ==","sort_order":"DESCEND","sort_target":1}'),
  },
  { name: 'range, trailing data after the object', request: post('/v3/kv/range', '{"key":"YQ=="} x') },
  { name: 'range, null body', request: post('/v3/kv/range', 'null') },
  {
    name: 'a value large enough to be sent chunked',
    request: postJson('/v3/kv/put', { key: b64('big'), value: b64('v'.repeat(3000)) }),
  },
  { name: 'range of the large value', request: postJson('/v3/kv/range', { key: b64('big') }) },
  {
    name: 'txn',
    request: postJson('/v3/kv/txn', {
      compare: [{ key: b64('a'), target: 'VALUE', result: 'EQUAL', value: b64('2') }],
      success: [{ request_put: { key: b64('b'), value: b64('3') } }, { request_range: { key: b64('a') } }],
      failure: [{ request_delete_range: { key: b64('a') } }],
    }),
  },
  { name: 'deleterange', request: postJson('/v3/kv/deleterange', { key: b64('b'), prev_kv: true }) },
  { name: 'lease grant', request: postJson('/v3/lease/grant', { TTL: 900, ID: 1234 }) },
  { name: 'lease grant, duplicate ID', request: postJson('/v3/lease/grant', { TTL: 900, ID: 1234 }) },
  {
    name: 'lease timetolive',
    request: postJson('/v3/lease/timetolive', { ID: 1234, keys: true }),
    normalise: normaliseTimeToLive,
  },
  { name: 'lease leases', request: postJson('/v3/lease/leases', {}) },
  { name: 'member list', request: postJson('/v3/cluster/member/list', {}), normalise: normaliseMembers },
  { name: 'maintenance status', request: postJson('/v3/maintenance/status', {}), normalise: normaliseStatus },
  {
    name: 'version',
    request: { method: 'GET', path: '/version', body: '' },
    normalise: (t) => t.replace(/"etcdserver":"[^"]*"/, '"etcdserver":"<v>"'),
  },
  { name: 'health', request: { method: 'GET', path: '/health', body: '' } },
  // Lock and election (v3lockpb, v3electionpb), maintenance, auth and cluster routes.
  { name: 'lock', request: postJson('/v3/lock/lock', { name: b64('lk'), lease: 1234 }) },
  { name: 'unlock', request: postJson('/v3/lock/unlock', { key: b64('lk/4d2') }) },
  {
    name: 'election campaign',
    request: postJson('/v3/election/campaign', { name: b64('el'), lease: 1234, value: b64('me') }),
  },
  { name: 'election leader', request: postJson('/v3/election/leader', { name: b64('el') }) },
  { name: 'election leader, no election', request: postJson('/v3/election/leader', { name: b64('none') }) },
  { name: 'election observe', request: postJson('/v3/election/observe', { name: b64('el') }), stream: true },
  {
    name: 'election proclaim',
    request: postJson('/v3/election/proclaim', {
      leader: { name: b64('el'), key: b64('el/4d2'), rev: 0, lease: 1234 },
      value: b64('again'),
    }),
  },
  {
    name: 'election resign',
    request: postJson('/v3/election/resign', {
      leader: { name: b64('el'), key: b64('el/4d2'), lease: 1234 },
    }),
  },
  { name: 'alarm list', request: postJson('/v3/maintenance/alarm', {}) },
  { name: 'alarm, unknown action', request: post('/v3/maintenance/alarm', '{"action":"NOPE"}') },
  { name: 'defragment', request: postJson('/v3/maintenance/defragment', {}) },
  { name: 'auth status', request: postJson('/v3/auth/status', {}) },
  // User and role management is not implemented (docs/compatibility.md): only what a store
  // without users answers is compared.
  { name: 'auth user list', request: postJson('/v3/auth/user/list', {}) },
  { name: 'auth role list', request: postJson('/v3/auth/role/list', {}) },
  { name: 'auth user get, unknown', request: postJson('/v3/auth/user/get', { name: 'u1' }) },
  {
    name: 'authenticate, auth disabled',
    request: postJson('/v3/auth/authenticate', { name: 'root', password: 'x' }),
  },
  { name: 'member add, bad URL', request: postJson('/v3/cluster/member/add', { peerURLs: ['nope'] }) },
  { name: 'member remove, unknown ID', request: postJson('/v3/cluster/member/remove', { ID: 1 }) },
  // Unary calls that fail in the server.
  { name: 'put without a key', request: postJson('/v3/kv/put', { value: b64('x') }) },
  {
    name: 'put with an unknown lease',
    request: postJson('/v3/kv/put', { key: b64('a'), value: b64('1'), lease: 999 }),
  },
  {
    name: 'range at a future revision',
    request: postJson('/v3/kv/range', { key: b64('a'), revision: 1000 }),
  },
  { name: 'revoke an unknown lease', request: postJson('/v3/lease/revoke', { ID: 4321 }) },
  // Unary calls the gateway refuses before the server sees them.
  { name: 'truncated JSON', request: post('/v3/kv/range', '{"key":"YQ=="') },
  { name: 'not JSON', request: post('/v3/kv/range', 'x') },
  { name: 'an array body', request: post('/v3/kv/range', '[]') },
  { name: 'bytes given a number', request: post('/v3/kv/range', '{"key":5}') },
  { name: 'base64 without padding', request: post('/v3/kv/range', '{"key":"YQ"}') },
  { name: 'int64 given a fraction', request: post('/v3/kv/range', '{"key":"YQ==","limit":1.5}') },
  { name: 'int64 given a quoted non-number', request: post('/v3/kv/range', '{"key":"YQ==","limit":"x"}') },
  {
    name: 'int64 out of range',
    request: post('/v3/kv/range', '{"key":"YQ==","limit":"18446744073709551616"}'),
  },
  { name: 'bool given a string', request: post('/v3/kv/range', '{"key":"YQ==","serializable":"true"}') },
  { name: 'unknown enum name', request: post('/v3/kv/range', '{"key":"YQ==","sort_order":"BAD"}') },
  { name: 'int64 given a bool', request: post('/v3/kv/range', '{"key":"YQ==","limit":true}') },
  { name: 'int64 given an object', request: post('/v3/kv/range', '{"key":"YQ==","limit":{}}') },
  { name: 'int64 quoted with spaces', request: post('/v3/kv/range', '{"key":"YQ==","limit":" 1 "}') },
  { name: 'int64 quoted with a leading zero', request: post('/v3/kv/range', '{"key":"YQ==","limit":"01"}') },
  { name: 'int64 quoted empty', request: post('/v3/kv/range', '{"key":"YQ==","limit":""}') },
  { name: 'enum given a quoted number', request: post('/v3/kv/range', '{"key":"YQ==","sort_order":"2"}') },
  { name: 'enum given a fraction', request: post('/v3/kv/range', '{"key":"YQ==","sort_order":1.5}') },
  { name: 'bytes given an array of numbers', request: post('/v3/kv/range', '{"key":[97]}') },
  { name: 'bytes with an escaped newline', request: post('/v3/kv/range', '{"key":"YQ\\n=="}') },
  { name: 'a raw newline inside a string', request: post('/v3/kv/range', '{"key":"YQ\n=="}') },
  { name: 'a bad escape', request: post('/v3/kv/range', '{"key":"\\x"}') },
  { name: 'repeated field given an object', request: post('/v3/kv/txn', '{"compare":{}}') },
  { name: 'message field given a string', request: post('/v3/kv/txn', '{"success":["x"]}') },
  { name: 'string field given a number', request: post('/v3/auth/authenticate', '{"name":5}') },
  { name: 'array without its end', request: post('/v3/kv/txn', '{"compare":[') },
  { name: 'an object key without quotes', request: post('/v3/kv/range', '{key:1}') },
  { name: 'a comma after the last field', request: post('/v3/kv/range', '{"key":"YQ==",}') },
  { name: 'a bad literal', request: post('/v3/kv/range', '{"key":"YQ==","serializable":nul}') },
  { name: 'a bad number', request: post('/v3/kv/range', '{"key":"YQ==","limit":-}') },
  { name: 'a bad exponent', request: post('/v3/kv/range', '{"key":"YQ==","limit":1e}') },
  // Routes and methods.
  { name: 'unknown route under /v3', request: postJson('/v3/kv/nope', {}) },
  { name: 'route with a trailing slash', request: postJson('/v3/kv/range/', {}) },
  { name: 'GET on a POST route', request: { method: 'GET', path: '/v3/kv/range', body: '' } },
  { name: 'OPTIONS (CORS preflight)', request: { method: 'OPTIONS', path: '/v3/kv/range', body: '' } },
  // Lease keep-alive: a body of N messages gets N answers, then the stream ends.
  { name: 'keepalive, one message', request: postJson('/v3/lease/keepalive', { ID: 1234 }) },
  { name: 'keepalive, ID as a string', request: post('/v3/lease/keepalive', '{"ID":"1234"}') },
  {
    name: 'keepalive, three messages in one body',
    request: post('/v3/lease/keepalive', '{"ID":1234}{"ID":1234}\n{"ID":1234}'),
  },
  {
    name: 'keepalive, chunked messages',
    request: post('/v3/lease/keepalive', ['{"ID":1234}', '{"ID":', '1234}']),
  },
  { name: 'keepalive, unknown lease', request: postJson('/v3/lease/keepalive', { ID: 999 }) },
  { name: 'keepalive, empty body', request: post('/v3/lease/keepalive', '') },
  { name: 'keepalive, bad JSON first', request: post('/v3/lease/keepalive', '{"ID":"abc"}') },
  { name: 'keepalive, truncated', request: post('/v3/lease/keepalive', '{"ID":1234') },
  {
    name: 'keepalive, bad JSON after a good message',
    request: post('/v3/lease/keepalive', '{"ID":1234} x {"ID":1234}'),
  },
  // Watch: the stream stays open after the request body ends.
  {
    name: 'watch, create',
    request: postJson('/v3/watch', { create_request: { key: b64('a') } }),
    stream: true,
  },
  {
    name: 'watch from revision 1 with prev_kv',
    request: postJson('/v3/watch', { create_request: { key: b64('a'), start_revision: 1, prev_kv: true } }),
    stream: true,
  },
  {
    name: 'watch a prefix, filters, two watches and a cancel',
    request: post('/v3/watch', [
      JSON.stringify({
        create_request: { key: b64('a'), range_end: b64('c'), start_revision: 2, filters: ['NODELETE'] },
      }),
      JSON.stringify({ create_request: { key: b64('big'), start_revision: 1 } }),
      JSON.stringify({ cancel_request: { watch_id: 0 } }),
    ]),
    stream: true,
  },
  // The requests Patroni 3's etcd3 DCS sends (patroni/dcs/etcd3.py), as it shapes them.
  {
    name: 'Patroni: initialize key by txn on create_revision 0',
    request: postJson('/v3/kv/txn', {
      compare: [{ target: 'CREATE', create_revision: 0, key: b64('/service/s/initialize') }],
      success: [{ request_put: { key: b64('/service/s/initialize'), value: b64('7001') } }],
    }),
  },
  {
    name: 'Patroni: leader key put with a lease, by txn on mod_revision',
    request: postJson('/v3/kv/txn', {
      compare: [{ target: 'MOD', mod_revision: '3', key: b64('/service/s/leader') }],
      success: [{ request_put: { key: b64('/service/s/leader'), value: b64('pg1'), lease: '1234' } }],
    }),
  },
  {
    name: 'Patroni: serializable prefix range',
    request: postJson('/v3/kv/range', {
      key: b64('/service/s/'),
      range_end: b64('/service/s0'),
      serializable: true,
    }),
  },
  {
    name: 'Patroni: prefix watch from a revision, empty filters',
    request: postJson('/v3/watch', {
      create_request: {
        key: b64('/service/s/'),
        range_end: b64('/service/s0'),
        start_revision: '2',
        filters: [],
      },
    }),
    stream: true,
  },
  { name: 'watch, empty create', request: postJson('/v3/watch', { create_request: {} }), stream: true },
  {
    name: 'watch, cancel of an unknown watch',
    request: postJson('/v3/watch', { cancel_request: { watch_id: 5 } }),
    stream: true,
  },
  { name: 'watch, not JSON', request: post('/v3/watch', 'x'), stream: true },
  { name: 'watch, empty body', request: post('/v3/watch', ''), stream: true },
  {
    name: 'watch, a future revision',
    request: postJson('/v3/watch', { create_request: { key: b64('a'), start_revision: 1000 } }),
    stream: true,
  },
];

describe('JSON gateway against etcd 3.4, byte for byte', {
  skip: !etcdAvailable() && 'etcd 3.4 is not installed',
}, () => {
  let concord: ProcessCluster;
  let etcd: ProcessCluster;

  before(async () => {
    [concord, etcd] = await Promise.all([startConcordCluster({ size: 1 }), startEtcdCluster({ size: 1 })]);
    // A Concord member serves before its own client URLs are applied (etcd serves only after it
    // published them; docs/compatibility.md): the member-list cases start once they are.
    for (let attempt = 0; ; attempt++) {
      const list = (await (
        await fetch(`${concord.endpoint(0)}/v3/cluster/member/list`, { method: 'POST', body: '{}' })
      ).json()) as { members?: { clientURLs?: string[] }[] };
      if (list.members?.every((m) => (m.clientURLs ?? []).length > 0)) break;
      if (attempt === 100)
        throw new Error(`the member never published its client URLs: ${JSON.stringify(list)}`);
      await sleep(100);
    }
  });

  after(async () => {
    await Promise.all([concord?.dispose(), etcd?.dispose()]);
  });

  it('answers every fixed case as etcd does', async () => {
    await concord.withLogsOnFailure(async () => {
      const mismatches: string[] = [];
      for (const testCase of fixedCases) {
        const expected = await exchange(etcd.endpoint(0), testCase);
        const actual = await exchange(concord.endpoint(0), testCase);
        if (expected !== actual)
          mismatches.push(`## ${testCase.name}\n-- etcd:\n${expected}\n-- concord:\n${actual}`);
      }
      assert.equal(
        mismatches.length,
        0,
        `${mismatches.length} of ${fixedCases.length} differ:\n${mismatches.join('\n\n')}`,
      );
    });
  });

  it('answers seeded request sequences as etcd does', async () => {
    await concord.withLogsOnFailure(async () => {
      const mismatches: string[] = [];
      const shared = { compactRevisions: new Set<number>() };
      for (const seed of seeds) {
        for (const [step, testCase] of generateCases(seed, stepsPerSeed, shared).entries()) {
          const expected = await exchange(etcd.endpoint(0), testCase);
          const actual = await exchange(concord.endpoint(0), testCase);
          if (expected === actual) continue;
          // The stores may differ from here on: the rest of this sequence proves nothing.
          const sent = JSON.stringify(testCase.request);
          mismatches.push(
            `## seed ${seed} step ${step}: ${testCase.name}\n${sent}\n-- etcd:\n${expected}\n-- concord:\n${actual}`,
          );
          break;
        }
      }
      assert.equal(mismatches.length, 0, `GATEWAY_SEEDS=${seeds.join(',')}:\n${mismatches.join('\n\n')}`);
    });
  });

  it('fails a keep-alive stream without a leader as etcd does', async () => {
    // Three members each; two killed: the survivor has no leader to send a keep-alive to.
    const [concord3, etcd3] = await Promise.all([
      startConcordCluster({ size: 3 }),
      startEtcdCluster({ size: 3 }),
    ]);
    try {
      const grant = postJson('/v3/lease/grant', { TTL: 600, ID: 77 });
      const keepAlive: Case = {
        name: 'keepalive without a leader',
        request: postJson('/v3/lease/keepalive', { ID: 77 }),
      };
      const answers: string[] = [];
      for (const cluster of [etcd3, concord3]) {
        await rawExchange(cluster.endpoint(0), grant, unaryRead);
        await Promise.all([cluster.kill(1), cluster.kill(2)]);
        // Four election timeouts: a leader among the dead or not, the survivor knows it has none.
        await sleep(2000);
        answers.push(await exchange(cluster.endpoint(0), keepAlive, { quietMs: 1000, totalMs: 15_000 }));
      }
      const [expected, actual] = answers;
      assert.match(expected ?? '', /no leader/);
      assert.equal(actual, expected);
    } finally {
      await Promise.all([concord3.dispose(), etcd3.dispose()]);
    }
  });
});

// An etcdctl 3.4 transcript of the commands people use, run against a fresh 3-member etcd 3.4
// cluster and a fresh 3-member Concord cluster, command by command, in every output format that
// etcdctl has (simple, json, fields, table, protobuf): each command's exit code, stdout and error
// line must be the same after normalising only what two independent clusters cannot share:
//  - member and cluster IDs (hex and decimal) become <m0>, <m1>, <m2>, <cluster>; lease IDs the
//    servers chose become <lease1>, …; URLs and ports become the member names; scratch paths <dir>;
//  - Raft terms and indexes, database sizes, versions, timings ("took", remaining lease TTLs),
//    snapshot file hashes and sizes, which member leads: the values go, the fields stay.
// Revisions are compared as they are: both clusters start at revision 1 and see the same writes.
// `-w protobuf` prints the response's bytes: they are decoded field by field (no schema) and
// printed as text, where the same normalisation applies. A watch runs until its output has been
// still for a second (it replays history from a start revision, so everything it prints is known
// in advance), then is stopped. TRANSCRIPT_DUMP=1 prints etcd's side of every step.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startConcordCluster } from '../support/cluster.js';
import { etcdAvailable, startEtcdCluster } from '../support/etcd-cluster.js';
import { EtcdctlProcess, etcdctl, etcdctlOk } from '../support/etcdctl.js';
import type { ProcessCluster } from '../support/process-cluster.js';

interface Side {
  cluster: ProcessCluster;
  dir: string;
  /** Text → stand-in, applied longest first. */
  names: Map<string, string>;
  leases: number;
}

const FORMATS = ['simple', 'json', 'fields', 'table', 'protobuf'] as const;

/** Values that differ between any two clusters, by the JSON field or `-w fields` name. */
const VOLATILE_FIELDS = [
  'raft_term',
  'raftTerm',
  'RaftTerm',
  'raftIndex',
  'RaftIndex',
  'raftAppliedIndex',
  'RaftAppliedIndex',
  'dbSize',
  'DBSize',
  'dbSizeInUse',
  'DBSizeInUse',
  'hash',
  'Hash',
  'Size',
  'totalSize',
  'TotalSize',
  // A lease's remaining TTL (timetolive) is the clock's.
  'TTL',
  'ttl',
  // Which member leads is chance.
  'leader',
  'Leader',
];

function normalise(side: Side, text: string): string {
  let out = text;
  // Lease IDs chosen by the server: "lease 694d7c3f5e8a0c0b granted", then wherever they appear.
  out = out.replace(/lease ([0-9a-f]{16}) granted/g, (_, id: string) => {
    const known = side.names.get(id);
    if (known !== undefined) return `lease ${known} granted`;
    const name = `<lease${++side.leases}>`;
    side.names.set(id, name);
    side.names.set(BigInt(`0x${id}`).toString(), name);
    return `lease ${name} granted`;
  });
  // The server's version string (a key's version is a number, and is compared).
  out = out.replace(/"(version|Version)"( ?: ?)"[^"]*"/g, '"$1"$2<v>');
  for (const field of VOLATILE_FIELDS) {
    out = out.replace(new RegExp(`"${field}":("[^"]*"|-?\\d+)`, 'g'), `"${field}":<v>`);
    out = out.replace(new RegExp(`^"${field}" : .*$`, 'gm'), `"${field}" : <v>`);
  }
  // snapshot status -w simple: hash, revision, total keys, total size.
  out = out.replace(/^[0-9a-f]+, (\d+), (\d+), [^\n]+$/gm, '<v>, $1, $2, <v>');
  for (const [from, to] of [...side.names].sort((a, b) => b[0].length - a[0].length))
    out = out.split(from).join(to);
  out = out.replace(/took = [^\n]*/g, 'took = <t>');
  out = out.replace(/remaining\(-?\d+s\)/g, 'remaining(<t>)');
  // endpoint status -w simple: URL, ID, version, DB size, is leader, is learner, term, index, applied index, errors.
  out = out.replace(
    /^([^,\n]+), ([^,\n]+), [^,\n]+, [^,\n]+, (?:true|false), (true|false), \d+, \d+, \d+, /gm,
    '$1, $2, <v>, <v>, <v>, $3, <v>, <v>, <v>, ',
  );
  // Tables: cells trimmed, the volatile columns blanked.
  const lines = out.split('\n');
  let volatileColumns: number[] = [];
  return lines
    .map((line) => {
      if (!line.startsWith('|')) return line.startsWith('+') ? '+' : line;
      const cells = line.split('|').map((cell) => cell.trim());
      if (cells.includes('RAFT TERM') || cells.includes('HASH'))
        volatileColumns = cells.flatMap((c, i) =>
          [
            'VERSION',
            'DB SIZE',
            'IS LEADER',
            'RAFT TERM',
            'RAFT INDEX',
            'RAFT APPLIED INDEX',
            'HASH',
            'TOTAL SIZE',
          ].includes(c)
            ? [i]
            : [],
        );
      return cells.map((c, i) => (volatileColumns.includes(i) && !/^[A-Z ]+$/.test(c) ? '<v>' : c)).join('|');
    })
    .join('\n');
}

interface ProtoField {
  field: number;
  value: bigint | Buffer;
}

function readVarint(bytes: Buffer, start: number): { value: bigint; next: number } | undefined {
  let value = 0n;
  for (let pos = start, shift = 0n; pos < bytes.length && shift < 70n; pos++, shift += 7n) {
    value |= BigInt(bytes[pos]! & 0x7f) << shift;
    if (bytes[pos]! < 0x80) return { value, next: pos + 1 };
  }
  return undefined;
}

/** A protobuf message's fields without a schema; undefined when the bytes are not one. */
function protoFields(bytes: Buffer): ProtoField[] | undefined {
  const fields: ProtoField[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const tag = readVarint(bytes, pos);
    if (tag === undefined || tag.value >> 3n === 0n) return undefined;
    const field = Number(tag.value >> 3n);
    pos = tag.next;
    switch (Number(tag.value & 7n)) {
      case 0: {
        const v = readVarint(bytes, pos);
        if (v === undefined) return undefined;
        fields.push({ field, value: v.value });
        pos = v.next;
        break;
      }
      case 2: {
        const length = readVarint(bytes, pos);
        if (length === undefined || length.next + Number(length.value) > bytes.length) return undefined;
        pos = length.next + Number(length.value);
        fields.push({ field, value: bytes.subarray(length.next, pos) });
        break;
      }
      case 1:
      case 5: {
        const size = Number(tag.value & 7n) === 1 ? 8 : 4;
        if (pos + size > bytes.length) return undefined;
        fields.push({ field, value: bytes.subarray(pos, pos + size) });
        pos += size;
        break;
      }
      default:
        return undefined;
    }
  }
  return fields;
}

const printable = (bytes: Buffer): boolean => bytes.every((b) => b >= 0x20 && b < 0x7f);

const clusterIdOf = (side: Side): string | undefined =>
  [...side.names].find(([from, to]) => to === '<cluster>' && /^\d+$/.test(from))?.[0];

/** A response header: a message whose field 1 is the cluster ID. Its field 4 is the raft_term. */
const isHeader = (side: Side, fields: ProtoField[]): boolean =>
  fields[0]?.field === 1 && typeof fields[0].value === 'bigint' && `${fields[0].value}` === clusterIdOf(side);

/**
 * Fields on one line: `field: value` pairs, nested messages in braces. Length-delimited fields
 * print as strings when printable (keys, values, names, URLs), else as messages when they parse
 * as one, else as hex. Any varint that is a cluster, member or lease ID prints as its stand-in;
 * a header's raft_term (and `termField` at this level) prints as <v>.
 */
function protoText(side: Side, fields: ProtoField[], termField?: number): string {
  const term = isHeader(side, fields) ? 4 : termField;
  return fields
    .map(({ field, value }) => {
      if (field === term) return `${field}: <v>`;
      if (typeof value === 'bigint') return `${field}: ${side.names.get(`${value}`) ?? value}`;
      if (printable(value)) return `${field}: ${JSON.stringify(value.toString('latin1'))}`;
      const nested = protoFields(value);
      return nested === undefined
        ? `${field}: 0x${value.toString('hex')}`
        : `${field} {${protoText(side, nested)}}`;
    })
    .join(' ');
}

/** `-w protobuf` output as text, a line per top-level field (so unordered lists can be sorted). */
function protobufOutput(side: Side, bytes: Buffer): string {
  const fields = protoFields(bytes);
  if (fields === undefined) return bytes.toString('utf8');
  // Some commands (lease grant, list, timetolive) print only the header: its fields are top-level.
  const term = isHeader(side, fields) ? 4 : undefined;
  return fields.map((f) => `${protoText(side, [f], term)}\n`).join('');
}

/** What a command shows a user: exit code, stdout, and the Error: line (logs carry timestamps). */
async function run(side: Side, args: string[], endpoints?: string[], stdin?: string): Promise<string> {
  const argv = args.map((a) => a.replace('<dir>', side.dir));
  const result = await etcdctl(argv, { endpoints: endpoints ?? [side.cluster.members[0]!.clientUrl], stdin });
  const error = result.stderr.split('\n').find((l) => l.startsWith('Error:')) ?? '';
  const stdout =
    args.at(-1) === 'protobuf' && result.code === 0
      ? protobufOutput(side, result.stdoutBytes)
      : result.stdout;
  return normalise(side, `exit ${result.code}\n${stdout}${error}`);
}

/** A watch replaying history: its output once it has been still for a second (at most 15 s). */
async function watch(side: Side, args: string[]): Promise<string> {
  const process = new EtcdctlProcess(args, [side.cluster.members[0]!.clientUrl]);
  let exited = false;
  try {
    const deadline = Date.now() + 15_000;
    let seen = -1;
    let stillSince = Date.now();
    while (Date.now() < deadline && !process.hasExited) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      if (process.stdoutLength !== seen) {
        seen = process.stdoutLength;
        stillSince = Date.now();
      } else if (seen > 0 && Date.now() - stillSince >= 1000) break;
    }
    exited = process.hasExited;
  } finally {
    await process.stop();
  }
  const error = process.stderr.split('\n').find((l) => l.startsWith('Error:')) ?? '';
  const stdout = args.at(-1) === 'protobuf' ? protobufOutput(side, process.stdoutBytes) : process.stdout;
  return normalise(side, `${exited ? 'exited' : 'watching'}\n${stdout}${error}`);
}

async function learnNames(side: Side): Promise<void> {
  const text = await etcdctlOk(['member', 'list', '-w', 'json'], {
    endpoints: [side.cluster.members[0]!.clientUrl],
  });
  const list = JSON.parse(text.replace(/"(ID|cluster_id|member_id)":(\d+)/g, '"$1":"$2"')) as {
    header: { cluster_id: string };
    members: { ID: string; name: string }[];
  };
  const cluster = BigInt(list.header.cluster_id);
  side.names.set(cluster.toString(), '<cluster>');
  side.names.set(cluster.toString(16), '<cluster>');
  for (const m of list.members) {
    const id = BigInt(m.ID);
    side.names.set(id.toString(), `<${m.name}>`);
    side.names.set(id.toString(16), `<${m.name}>`);
  }
  for (const m of side.cluster.members) {
    side.names.set(m.clientUrl, `${m.name}-client`);
    side.names.set(m.peerUrl, `${m.name}-peer`);
  }
  side.names.set(side.dir, '<dir>');
}

const formats = (args: string[]) => FORMATS.map((w) => [...args, '-w', w]);

/**
 * For lists whose order follows the members' IDs (random per cluster): JSON member objects, `-w fields` blocks (each starting at its "ID" line) and other lines sorted.
 */
function sortedItems(text: string): string {
  const [status, ...rest] = text.split('\n');
  const body = rest.join('\n');
  const items = body.match(/\{"(ID|id)":[^{}]*\}/g);
  if (items !== null && /"(members|leases)":\[/.test(body))
    return `${status}\n${body.replace(/\{"(ID|id)":[^{}]*\}(,\{"(ID|id)":[^{}]*\})*/, [...items].sort().join(','))}`;
  return `${status}\n${body.split('\n').sort().join('\n')}`;
}

/** The transcript: commands run in this order on both clusters. */
/** `expect`: what etcd's own output must show, so a step that fails the same way on both cannot pass unnoticed. */
const transcript: {
  args: string[];
  all?: true;
  unordered?: true;
  stdin?: string;
  expect?: RegExp;
  watch?: true;
}[] = [
  ...formats(['put', 'greeting', 'hello']).map((args) => ({ args })),
  { args: ['put', 'greeting', 'hello again', '--prev-kv'] },
  { args: ['put', 'config/a', '1'] },
  { args: ['put', 'config/b', '2'] },
  ...formats(['get', 'greeting']).map((args) => ({ args })),
  ...formats(['get', 'config/', '--prefix', '--sort-by=MODIFY', '--order=DESCEND']).map((args) => ({ args })),
  { args: ['get', 'config/', '--prefix', '--keys-only'] },
  { args: ['get', 'config/', '--prefix', '--limit=1', '-w', 'json'] },
  { args: ['get', 'greeting', '--rev=2'] },
  { args: ['get', 'missing'] },
  ...formats(['del', 'config/b', '--prev-kv']).map((args) => ({ args })),
  { args: ['del', 'nothing-here'] },
  // txn -i reads compares, then success ops, then failure ops, separated by blank lines.
  ...formats(['txn']).map((args) => ({
    args,
    // etcdctl has no table printer for txn: exit 4 from both.
    expect: args.includes('table') ? /^exit 4\n/ : /^exit 0\n\s*\S/,
    stdin: 'value("greeting") = "hello again"\n\nput greeting bye\nget config/a\n\nput config/x 9\n\n',
  })),
  { args: ['txn'], stdin: 'mod("greeting") > "0"\n\ndel config/a --prev-kv\n\n\n', expect: /SUCCESS/ },
  { args: ['txn'], stdin: 'value("nope") = "x"\n\n\nput config/y 1\nget greeting\n\n' },
  ...formats(['endpoint', 'hashkv']).map((args) => ({ args })),
  ...formats(['endpoint', 'status']).map((args) => ({ args })),
  { args: ['endpoint', 'health'] },
  ...formats(['member', 'list']).map((args) => ({ args, unordered: true as const })),
  { args: ['member', 'remove', '1234'] },
  { args: ['member', 'update', '1234', '--peer-urls=http://127.0.0.1:1'] },
  { args: ['lease', 'grant', '600'] },
  { args: ['lease', 'grant', '900'] },
  ...formats(['lease', 'list']).map((args) => ({ args, unordered: true as const })),
  ...formats(['lease', 'timetolive', '<lease1-hex>', '--keys']).map((args) => ({ args })),
  { args: ['lease', 'revoke', '<lease2-hex>'] },
  { args: ['lease', 'revoke', '<lease2-hex>'] },
  { args: ['lease', 'keep-alive', '--once', '<lease1-hex>'] },
  ...formats(['watch', 'greeting', '--rev=1']).map((args) => ({ args, watch: true as const })),
  ...formats(['watch', 'config/', '--prefix', '--prev-kv', '--rev=1']).map((args) => ({
    args,
    watch: true as const,
  })),
  ...formats(['alarm', 'list']).map((args) => ({ args })),
  { args: ['alarm', 'disarm'] },
  { args: ['compaction', '4'], expect: /compacted revision 4/ },
  { args: ['compaction', '4'], expect: /required revision has been compacted/ },
  { args: ['get', 'greeting', '--rev=3'] },
  { args: ['watch', 'greeting', '--rev=2'], watch: true, expect: /canceled by the server/ },
  { args: ['compaction', '100'] },
  { args: ['defrag'] },
  { args: ['snapshot', 'save', '<dir>/snap.db'] },
  ...formats(['snapshot', 'status', '<dir>/snap.db']).map((args) => ({ args })),
  { args: ['move-leader', '1234'], all: true },
  { args: ['snapshot', 'restore', '<dir>/snap.db', '--data-dir', '<dir>/restored'], expect: /^exit 0\n/ },
  { args: ['snapshot', 'restore', '<dir>/missing.db', '--data-dir', '<dir>/restored2'] },
];

describe('an etcdctl transcript is the same on etcd 3.4 and Concord', {
  skip: !etcdAvailable() && 'etcd 3.4 is not installed',
  timeout: 600_000,
}, () => {
  const sides: Side[] = [];

  before(async () => {
    const [e, c] = await Promise.allSettled([
      startEtcdCluster({ size: 3 }),
      startConcordCluster({ size: 3 }),
    ]);
    if (e.status === 'rejected' || c.status === 'rejected') {
      await Promise.all([e, c].map((r) => (r.status === 'fulfilled' ? r.value.dispose() : undefined)));
      throw e.status === 'rejected' ? e.reason : (c as PromiseRejectedResult).reason;
    }
    for (const cluster of [e.value, c.value]) {
      const side: Side = {
        cluster,
        dir: await mkdtemp(join(tmpdir(), 'concord-transcript-')),
        names: new Map(),
        leases: 0,
      };
      await learnNames(side);
      sides.push(side);
    }
  });

  after(async () => {
    for (const side of sides) {
      await side.cluster.dispose();
      await rm(side.dir, { recursive: true, force: true });
    }
  });

  it('prints the same thing for every command and format, in order', async () => {
    for (const step of transcript) {
      const outputs = await Promise.all(
        sides.map((side) => {
          // A lease named by its place in the transcript: the side's own ID for it.
          const args = step.args.map((a) => {
            const match = /^<lease(\d+)-hex>$/.exec(a);
            if (!match) return a;
            const name = `<lease${match[1]}>`;
            const id = [...side.names].find(([from, to]) => to === name && /^[0-9a-f]{16}$/.test(from));
            return id?.[0] ?? a;
          });
          if (step.watch) return watch(side, args);
          return run(side, args, step.all ? side.cluster.endpoints() : undefined, step.stdin);
        }),
      );
      if (step.unordered) for (let i = 0; i < outputs.length; i++) outputs[i] = sortedItems(outputs[i]!);
      if (process.env.TRANSCRIPT_DUMP) console.log(`$ etcdctl ${step.args.join(' ')}\n${outputs[0]}`);
      assert.equal(outputs[1], outputs[0], `etcdctl ${step.args.join(' ')}`);
      if (step.expect)
        assert.match(outputs[0]!, step.expect, `etcd's answer to etcdctl ${step.args.join(' ')}`);
    }
  });
});

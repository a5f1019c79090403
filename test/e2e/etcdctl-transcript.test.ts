// An etcdctl 3.4 transcript of the commands people use, run against a fresh 3-member etcd 3.4
// cluster and a fresh 3-member Concord cluster, command by command, in every output format that
// prints text (simple, json, fields, table): each command's exit code, stdout and error line must
// be the same after normalising only what two independent clusters cannot share:
//  - member and cluster IDs (hex and decimal) become <m0>, <m1>, <m2>, <cluster>; lease IDs the
//    servers chose become <lease1>, …; URLs and ports become the member names; scratch paths <dir>;
//  - Raft terms and indexes, database sizes, versions, timings ("took", remaining lease TTLs),
//    snapshot file hashes and sizes, which member leads: the values go, the fields stay.
// Revisions are compared as they are: both clusters start at revision 1 and see the same writes.
// `-w protobuf` prints binary answers whose IDs cannot be rewritten and is left out; watch is
// compared in test/e2e/etcdctl.test.ts.

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startConcordCluster } from '../support/cluster.js';
import { etcdAvailable, startEtcdCluster } from '../support/etcd-cluster.js';
import { etcdctl, etcdctlOk } from '../support/etcdctl.js';
import type { ProcessCluster } from '../support/process-cluster.js';

interface Side {
  cluster: ProcessCluster;
  dir: string;
  /** Text → stand-in, applied longest first. */
  names: Map<string, string>;
  leases: number;
}

const FORMATS = ['simple', 'json', 'fields', 'table'] as const;

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

/** What a command shows a user: exit code, stdout, and the Error: line (logs carry timestamps). */
async function run(side: Side, args: string[], endpoints?: string[], stdin?: string): Promise<string> {
  const argv = args.map((a) => a.replace('<dir>', side.dir));
  const result = await etcdctl(argv, { endpoints: endpoints ?? [side.cluster.members[0]!.clientUrl], stdin });
  const error = result.stderr.split('\n').find((l) => l.startsWith('Error:')) ?? '';
  return normalise(side, `exit ${result.code}\n${result.stdout}${error}`);
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
const transcript: { args: string[]; all?: true; unordered?: true; stdin?: string; expect?: RegExp }[] = [
  ...formats(['put', 'greeting', 'hello']).map((args) => ({ args })),
  { args: ['put', 'greeting', 'hello again', '--prev-kv'] },
  { args: ['put', 'config/a', '1'] },
  { args: ['put', 'config/b', '2'] },
  ...formats(['get', 'greeting']).map((args) => ({ args })),
  ...formats(['get', 'config/', '--prefix', '--sort-by=MODIFY', '--order=DESCEND']).map((args) => ({ args })),
  { args: ['get', 'config/', '--prefix', '--keys-only'] },
  { args: ['get', 'config/', '--prefix', '--count-only', '-w', 'json'] },
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
  ...formats(['alarm', 'list']).map((args) => ({ args })),
  { args: ['alarm', 'disarm'] },
  { args: ['compaction', '4'], expect: /compacted revision 4/ },
  { args: ['compaction', '4'], expect: /required revision has been compacted/ },
  { args: ['get', 'greeting', '--rev=3'] },
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
          return run(side, args, step.all ? side.cluster.endpoints() : undefined, step.stdin);
        }),
      );
      if (step.unordered) for (let i = 0; i < outputs.length; i++) outputs[i] = sortedItems(outputs[i]!);
      assert.equal(outputs[1], outputs[0], `etcdctl ${step.args.join(' ')}`);
      if (step.expect)
        assert.match(outputs[0]!, step.expect, `etcd's answer to etcdctl ${step.args.join(' ')}`);
    }
  });
});

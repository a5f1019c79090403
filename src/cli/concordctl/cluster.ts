// member, endpoint, snapshot, defrag, alarm and move-leader: cluster and maintenance commands.

import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { type EndpointStatus, fromGrpcError, type Member } from '../../client/index.js';
import { type EtcdSnapshotStatus, etcdSnapshotStatus } from '../../mvcc/etcd-snapshot.js';
import { verifySnapshotFile } from '../../mvcc/keyspace.js';
import {
  hasHashTrailer,
  restoreSnapshotToDataDir,
  snapshotFormat,
  verifySnapshotHash,
} from '../../node/restore.js';
import { formatId } from '../../replica/ids.js';
import { BboltReader } from '../../storage/bbolt/index.js';
import { parseInitialCluster, parseUrlList } from '../flags.js';
import { flagBool, flagString, UsageError } from './args.js';
import { type Command, type CommandContext, CommandError } from './context.js';
import { headerJson, hex, humanBytes, ProgressBar, renderTable, toJson } from './output.js';

function memberJson(m: Member): Record<string, unknown> {
  return { ID: m.id, name: m.name, peerURLs: m.peerUrls, clientURLs: m.clientUrls, isLearner: m.isLearner };
}

function memberRow(m: Member): string[] {
  return [
    hex(m.id),
    m.name === '' ? 'unstarted' : 'started',
    m.name,
    m.peerUrls.join(','),
    m.clientUrls.join(','),
    String(m.isLearner),
  ];
}

export const memberList: Command = async (ctx) => {
  const result = await ctx.client.memberList({ linearizable: flagString(ctx.args, 'consistency') !== 's' });
  if (ctx.writeOut === 'json') {
    ctx.io.out(toJson({ header: headerJson(result.header), members: result.members.map(memberJson) }));
  } else if (ctx.writeOut === 'table') {
    ctx.io.out(
      renderTable(
        ['ID', 'STATUS', 'NAME', 'PEER ADDRS', 'CLIENT ADDRS', 'IS LEARNER'],
        result.members.map(memberRow),
      ),
    );
  } else {
    for (const m of result.members) ctx.io.out(memberRow(m).join(', '));
  }
  return 0;
};

function parseId(text: string | undefined, usage: string): bigint {
  if (text === undefined || !/^[0-9a-fA-F]+$/.test(text)) throw new UsageError(usage);
  return BigInt(`0x${text}`);
}

function peerUrls(ctx: CommandContext): string[] {
  const text = flagString(ctx.args, 'peer-urls');
  if (text === undefined || text === '') throw new UsageError('member peer urls not provided (--peer-urls)');
  return text.split(',').map((u) => u.trim());
}

export const memberAdd: Command = async (ctx) => {
  const [name] = ctx.operands;
  if (name === undefined || ctx.operands.length !== 1)
    throw new UsageError('member add command requires exactly one argument: the member name');
  const urls = peerUrls(ctx);
  const result = await ctx.client.memberAdd(urls, { learner: flagBool(ctx.args, 'learner') });
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      toJson({
        header: headerJson(result.header),
        member: memberJson(result.member),
        members: result.members.map(memberJson),
      }),
    );
    return 0;
  }
  const kind = result.member.isLearner ? 'as learner ' : '';
  ctx.io.out(
    `Member ${hex(result.member.id).padStart(16, '0')} added ${kind}to cluster ${hex(result.header.clusterId).padStart(16, '0')}\n`,
  );
  const initial = result.members.flatMap((m) => {
    const memberName = m.id === result.member.id ? name : m.name;
    return memberName === '' ? [] : m.peerUrls.map((u) => `${memberName}=${u}`);
  });
  ctx.io.out(`ETCD_NAME="${name}"`);
  ctx.io.out(`ETCD_INITIAL_CLUSTER="${initial.join(',')}"`);
  ctx.io.out(`ETCD_INITIAL_ADVERTISE_PEER_URLS="${urls.join(',')}"`);
  ctx.io.out('ETCD_INITIAL_CLUSTER_STATE="existing"');
  return 0;
};

function memberChange(
  verb: 'removed from' | 'updated in' | 'promoted in',
  run: (ctx: CommandContext, id: bigint) => Promise<{ header: { clusterId: bigint }; members: Member[] }>,
): Command {
  return async (ctx) => {
    const id = parseId(ctx.operands[0], `member command needs the member ID (hex) as its argument`);
    const result = await run(ctx, id);
    if (ctx.writeOut === 'json')
      ctx.io.out(
        toJson({ header: headerJson(result.header as never), members: result.members.map(memberJson) }),
      );
    else
      ctx.io.out(
        `Member ${hex(id).padStart(16, '0')} ${verb} cluster ${hex(result.header.clusterId).padStart(16, '0')}`,
      );
    return 0;
  };
}

export const memberRemove = memberChange('removed from', (ctx, id) => ctx.client.memberRemove(id));
export const memberUpdate = memberChange('updated in', (ctx, id) =>
  ctx.client.memberUpdate(id, peerUrls(ctx)),
);
export const memberPromote = memberChange('promoted in', (ctx, id) => ctx.client.memberPromote(id));

/** The endpoints a per-endpoint command runs on: --endpoints, or every member's with --cluster. */
async function targetEndpoints(ctx: CommandContext): Promise<string[]> {
  if (!flagBool(ctx.args, 'cluster')) return ctx.endpoints;
  const { members } = await ctx.client.memberList();
  const urls = members.flatMap((m) => m.clientUrls);
  const known = new Set(ctx.endpoints);
  const unknown = urls.filter((u) => !known.has(u));
  if (unknown.length > 0)
    throw new CommandError(
      `--cluster: member endpoints ${unknown.join(', ')} are not among --endpoints; pass them there`,
    );
  return urls;
}

export const endpointStatus: Command = async (ctx) => {
  const endpoints = await targetEndpoints(ctx);
  const statuses: EndpointStatus[] = [];
  let failed = false;
  for (const endpoint of endpoints) {
    try {
      statuses.push(await ctx.client.status(endpoint));
    } catch (error) {
      failed = true;
      ctx.io.err(`Failed to get the status of endpoint ${endpoint} (${fromGrpcError(error).message})`);
    }
  }
  const row = (s: EndpointStatus) => [
    s.endpoint,
    hex(s.header.memberId),
    s.version,
    humanBytes(s.dbSize),
    String(s.leader === s.header.memberId),
    String(s.isLearner),
    String(s.raftTerm),
    String(s.raftIndex),
    String(s.raftAppliedIndex),
    s.errors.join(', '),
  ];
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      toJson(
        statuses.map((s) => ({
          Endpoint: s.endpoint,
          Status: {
            header: headerJson(s.header),
            version: s.version,
            dbSize: s.dbSize,
            leader: s.leader,
            raftIndex: s.raftIndex,
            raftTerm: s.raftTerm,
            raftAppliedIndex: s.raftAppliedIndex,
            errors: s.errors,
            dbSizeInUse: s.dbSizeInUse,
            isLearner: s.isLearner,
          },
        })),
      ),
    );
  } else if (ctx.writeOut === 'table') {
    ctx.io.out(
      renderTable(
        [
          'ENDPOINT',
          'ID',
          'VERSION',
          'DB SIZE',
          'IS LEADER',
          'IS LEARNER',
          'RAFT TERM',
          'RAFT INDEX',
          'RAFT APPLIED INDEX',
          'ERRORS',
        ],
        statuses.map(row),
      ),
    );
  } else {
    for (const s of statuses) ctx.io.out(row(s).join(', '));
  }
  return failed ? 1 : 0;
};

/** etcdctl's health check: a linearizable get must succeed (permission denied also counts). */
export const endpointHealth: Command = async (ctx) => {
  const endpoints = await targetEndpoints(ctx);
  const results: { endpoint: string; health: boolean; took: string; error?: string }[] = [];
  for (const endpoint of endpoints) {
    const started = process.hrtime.bigint();
    try {
      await ctx.client.call(
        'KV',
        'Range',
        { key: Buffer.from('health') },
        { idempotent: true, endpoint, timeoutMs: ctx.commandTimeoutMs },
      );
      results.push({
        endpoint,
        health: true,
        took: `${(Number(process.hrtime.bigint() - started) / 1e6).toFixed(3)}ms`,
      });
    } catch (raw) {
      const error = fromGrpcError(raw);
      const took = `${(Number(process.hrtime.bigint() - started) / 1e6).toFixed(3)}ms`;
      if (error.code === 'permission-denied') results.push({ endpoint, health: true, took });
      else results.push({ endpoint, health: false, took, error: error.message });
    }
  }
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      toJson(results.map((r) => ({ endpoint: r.endpoint, health: r.health, took: r.took, error: r.error }))),
    );
  } else if (ctx.writeOut === 'table') {
    ctx.io.out(
      renderTable(
        ['ENDPOINT', 'HEALTH', 'TOOK', 'ERROR'],
        results.map((r) => [r.endpoint, String(r.health), r.took, r.error ?? '']),
      ),
    );
  } else {
    for (const r of results) {
      if (r.health) ctx.io.out(`${r.endpoint} is healthy: successfully committed proposal: took = ${r.took}`);
      else ctx.io.err(`${r.endpoint} is unhealthy: failed to commit proposal: ${r.error}`);
    }
  }
  if (results.some((r) => !r.health)) throw new CommandError('unhealthy cluster');
  return 0;
};

export const endpointHashKv: Command = async (ctx) => {
  const endpoints = await targetEndpoints(ctx);
  const revision = BigInt(flagString(ctx.args, 'rev') ?? '0');
  const results = [];
  for (const endpoint of endpoints)
    results.push({ endpoint, ...(await ctx.client.hashKv(endpoint, revision)) });
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      toJson(
        results.map((r) => ({
          Endpoint: r.endpoint,
          HashKV: { header: headerJson(r.header), hash: BigInt(r.hash), compact_revision: r.compactRevision },
        })),
      ),
    );
  } else if (ctx.writeOut === 'table') {
    ctx.io.out(
      renderTable(
        ['ENDPOINT', 'HASH'],
        results.map((r) => [r.endpoint, String(r.hash)]),
      ),
    );
  } else {
    for (const r of results) ctx.io.out(`${r.endpoint}, ${r.hash}`);
  }
  return 0;
};

export const snapshotSave: Command = async (ctx) => {
  const [path] = ctx.operands;
  if (path === undefined || ctx.operands.length !== 1)
    throw new UsageError('snapshot save expects one argument: the file to write');
  if (ctx.endpoints.length !== 1)
    throw new UsageError(
      `snapshot must be requested to one selected node, not multiple ${ctx.endpoints.join(',')}`,
    );
  const partPath = `${path}.part`;
  const file = createWriteStream(partPath);
  const progress = new ProgressBar('snapshot');
  let received = 0;
  try {
    for await (const chunk of ctx.client.snapshot(ctx.endpoints[0] as string)) {
      received += chunk.blob.length;
      if (!file.write(chunk.blob)) await new Promise<void>((resolve) => file.once('drain', () => resolve()));
      progress.update(received, received + Number(chunk.remainingBytes));
    }
    await new Promise<void>((resolve, reject) =>
      file.end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
    progress.finish();
    await verifySnapshotHash(partPath, false).catch((error: Error) => {
      throw new CommandError(`${error.message} (corrupt or truncated download)`);
    });
    await rename(partPath, path);
  } catch (error) {
    file.destroy();
    await rm(partPath, { force: true });
    throw error;
  }
  ctx.io.out(`Snapshot saved at ${path}`);
  return 0;
};

/**
 * etcdctl's `snapshot restore FILE`: a data dir from which `concord` starts a new cluster with
 * the snapshot's keyspace; the file may be etcd's (from `snapshot save` against etcd or Concord,
 * or an etcd member's member/snap/db with --skip-hash-check) or an older Concord LMDB snapshot.
 * Run it for every member. With --initial-cluster (and --name, --initial-advertise-peer-urls,
 * --initial-cluster-token as etcdctl takes them) the new cluster's membership is fixed here, as
 * etcdctl does; without, it comes from the flags each member is started with.
 */
export const snapshotRestore: Command = async (ctx) => {
  const [path] = ctx.operands;
  if (path === undefined || ctx.operands.length !== 1)
    throw new UsageError('snapshot restore requires exactly one argument: the snapshot file');
  const name = flagString(ctx.args, 'name') ?? 'default';
  const dataDir = flagString(ctx.args, 'data-dir') ?? `${name}.concord`;
  const initialCluster = flagString(ctx.args, 'initial-cluster');
  const cluster =
    initialCluster === undefined
      ? undefined
      : {
          name,
          initialCluster: parseFlag(() => parseInitialCluster(initialCluster)),
          initialClusterToken: flagString(ctx.args, 'initial-cluster-token') ?? 'etcd-cluster',
          initialAdvertisePeerUrls: parseFlag(() =>
            parseUrlList(
              'initial-advertise-peer-urls',
              flagString(ctx.args, 'initial-advertise-peer-urls') ?? 'http://localhost:2380',
            ),
          ),
        };
  const result = await restoreSnapshotToDataDir({
    snapshotPath: path,
    dataDir,
    skipHashCheck: flagBool(ctx.args, 'skip-hash-check'),
    cluster,
  }).catch((error: unknown) => {
    throw new CommandError(`snapshot restore: ${(error as Error).message}`);
  });
  const contents =
    result.format === 'etcd'
      ? `${result.keys} keys, ${result.leases} leases, revision ${result.revision}, compacted at ${result.compactRevision}`
      : `revision ${result.revision}, compacted at ${result.compactRevision}, ${result.dataBytes} bytes`;
  for (const note of result.notes) ctx.io.err(`note: ${note}`);
  const membership =
    result.memberId === undefined
      ? 'with the --initial-cluster of the new cluster'
      : `(member ${formatId(result.memberId)}; the membership is in the data dir)`;
  ctx.io.out(
    `restored ${result.format === 'etcd' ? 'an etcd-format' : 'a Concord'} snapshot ${path} into ${dataDir} (${contents}); ` +
      `start the member with --data-dir ${dataDir} --initial-cluster-state new ${membership}`,
  );
  return 0;
};

function parseFlag<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** etcdctl's `snapshot status`: hash, revision, total keys, total size, of either format. */
export const snapshotStatus: Command = async (ctx) => {
  const [path] = ctx.operands;
  if (path === undefined || ctx.operands.length !== 1)
    throw new UsageError('snapshot status requires exactly one argument');
  const size = (
    await stat(path).catch((error: Error) => {
      throw new CommandError(error.message);
    })
  ).size;
  const dataBytes = hasHashTrailer(size)
    ? await verifySnapshotHash(path, false).catch((error: Error) => {
        throw new CommandError(error.message);
      })
    : size;
  const status =
    snapshotFormat(path) === 'etcd' ? etcdStatus(path, dataBytes) : await concordStatus(path, dataBytes);
  const hash = status.hash.toString(16);
  if (ctx.writeOut === 'json')
    ctx.io.out(
      toJson({
        hash: BigInt(status.hash),
        revision: BigInt(status.revision),
        totalKey: BigInt(status.totalKey),
        totalSize: BigInt(status.totalSize),
      }),
    );
  else if (ctx.writeOut === 'table')
    ctx.io.out(
      renderTable(
        ['HASH', 'REVISION', 'TOTAL KEYS', 'TOTAL SIZE'],
        [[hash, String(status.revision), String(status.totalKey), humanBytes(BigInt(status.totalSize))]],
      ),
    );
  else ctx.io.out(`${hash}, ${status.revision}, ${status.totalKey}, ${humanBytes(BigInt(status.totalSize))}`);
  return 0;
};

function etcdStatus(path: string, dataBytes: number): EtcdSnapshotStatus {
  try {
    const reader = BboltReader.open(path, { dataBytes });
    try {
      return etcdSnapshotStatus(reader);
    } finally {
      reader.close();
    }
  } catch (error) {
    throw new CommandError(`${path}: ${(error as Error).message}`);
  }
}

/** An older Concord snapshot (an LMDB copy): CRC-32 of the file, the keyspace's revision. */
async function concordStatus(path: string, dataBytes: number): Promise<EtcdSnapshotStatus> {
  const data = (await readFile(path)).subarray(0, dataBytes);
  const scratch = await mkdtemp(join(tmpdir(), 'concordctl-snap-'));
  try {
    const copy = join(scratch, 'snapshot.mdb');
    await writeFile(copy, data);
    const info = await verifySnapshotFile(copy).catch((error: unknown) => {
      throw new CommandError(`${path} is not a readable snapshot: ${(error as Error).message}`);
    });
    return {
      hash: crc32(data),
      revision: info.revision,
      totalKey: await countRecords(copy),
      totalSize: dataBytes,
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Revision records in the snapshot (etcd's "total keys" counts its key bucket the same way). */
async function countRecords(path: string): Promise<number> {
  const { open: openLmdb } = await import('lmdb');
  const env = openLmdb({ path, noSubdir: true, readOnly: true, maxDbs: 8 });
  try {
    return env.openDB({ name: 'revs', encoding: 'binary', keyEncoding: 'binary' }).getCount();
  } finally {
    await env.close();
    await rm(`${path}-lock`, { force: true });
  }
}

export const defrag: Command = async (ctx) => {
  const endpoints = await targetEndpoints(ctx);
  let failed = false;
  for (const endpoint of endpoints) {
    try {
      await ctx.client.defragment(endpoint, Math.max(ctx.commandTimeoutMs, 60_000));
      ctx.io.out(`Finished defragmenting etcd member[${endpoint}]`);
    } catch (error) {
      failed = true;
      ctx.io.err(`Failed to defragment etcd member[${endpoint}] (${fromGrpcError(error).message})`);
    }
  }
  return failed ? 1 : 0;
};

export const alarmList: Command = async (ctx) => {
  const result = await ctx.client.alarms('GET');
  if (ctx.writeOut === 'json')
    ctx.io.out(
      toJson({
        header: headerJson(result.header),
        alarms: result.alarms.map((a) => ({ memberID: a.memberId, alarm: a.alarm })),
      }),
    );
  else for (const a of result.alarms) ctx.io.out(`memberID:${a.memberId} alarm:${a.alarm} `);
  return 0;
};

export const alarmDisarm: Command = async (ctx) => {
  const current = await ctx.client.alarms('GET');
  const disarmed = [];
  for (const alarm of current.alarms) disarmed.push(...(await ctx.client.alarms('DEACTIVATE', alarm)).alarms);
  if (ctx.writeOut === 'json')
    ctx.io.out(
      toJson({
        header: headerJson(current.header),
        alarms: disarmed.map((a) => ({ memberID: a.memberId, alarm: a.alarm })),
      }),
    );
  else for (const a of disarmed) ctx.io.out(`memberID:${a.memberId} alarm:${a.alarm} `);
  return 0;
};

export const moveLeader: Command = async (ctx) => {
  const target = parseId(ctx.operands[0], 'move-leader command needs 1 argument: the target member ID (hex)');
  await ctx.client.refreshLeader();
  const before = ctx.client.pool.leader();
  const leaderId = before?.memberId === undefined ? undefined : BigInt(before.memberId);
  await ctx.client.moveLeader(target);
  ctx.io.out(`Leadership transferred from ${leaderId === undefined ? '?' : hex(leaderId)} to ${hex(target)}`);
  return 0;
};

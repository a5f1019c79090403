// The layering of docs/architecture.md, enforced: a module may import only from its own folder or
// from layers below it. A change that makes a lower layer reach up fails here.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * Higher numbers sit higher:
 * cli → api → server → services → node → replica → (transport, mvcc, lease, storage) → raft.
 */
const LAYER_RANKS: Record<string, number> = {
  util: 0,
  wire: 0,
  raft: 1,
  // Sharding building blocks (shard map, placement, oracle, rebalance plans): pure, import only util.
  shard: 1,
  // Cross-shard transactions (locks, records, coordinator, resolver): pure, over shard/ and util/.
  txn: 1.25,
  // Multi-Paxos reuses the Raft core's vocabulary (messages, entries, storage, conf changes).
  paxos: 1.5,
  storage: 2,
  lease: 2,
  // The simulator drives the production host loop (replica/raft-host.ts, ranked on its own below).
  sim: 2,
  mvcc: 3,
  transport: 3,
  client: 3,
  // One group on this node: applying committed entries, reads, snapshots, proposals.
  replica: 3.5,
  // One process: data dir, shared WAL, keyspace, transport, timers, fail-stop; hosts the replicas.
  node: 4,
  // What each etcd service does, over the node and its replicas.
  services: 4.25,
  // ConcordServer: the EtcdBackend the API layer and the CLI use, over the services.
  server: 4.5,
  api: 5,
  cli: 6,
};

/**
 * Files ranked apart from their folder, by path under src/. The host loop sits in replica/ with
 * the group it drives, but imports only raft/, so the simulator (which must stay clear of LMDB,
 * sockets and timers) can run the same loop.
 */
const FILE_RANKS: Record<string, number> = {
  'replica/raft-host.ts': 1.75,
};

function rankOf(path: string): number | undefined {
  return FILE_RANKS[path] ?? LAYER_RANKS[path.split('/')[0]!];
}

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    try {
      if (statSync(join(dir, 'package.json')).isFile() && statSync(join(dir, 'src')).isDirectory())
        return dir;
    } catch {
      // keep walking up
    }
    dir = dirname(dir);
  }
  throw new Error('cannot find the repository root');
}

function sourceFiles(dir: string): string[] {
  const files: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) files.push(...sourceFiles(path));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) files.push(path);
  }
  return files;
}

test('imports point down the layers, never up', () => {
  const src = join(findRoot(), 'src');
  const violations: string[] = [];
  for (const file of sourceFiles(src)) {
    const path = relative(src, file);
    const layer = path.split('/')[0]!;
    assert.notEqual(
      LAYER_RANKS[layer],
      undefined,
      `src/${layer} has no rank in LAYER_RANKS: place it in the layering`,
    );
    const rank = rankOf(path)!;
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/from '(\.[^']+)'|import\('(\.[^']+)'\)/g)) {
      const spec = match[1] ?? match[2]!;
      const targetPath = relative(src, normalize(join(dirname(file), spec))).replace(/\.js$/, '.ts');
      const target = targetPath.split('/')[0]!;
      const rankedApart = FILE_RANKS[path] !== undefined || FILE_RANKS[targetPath] !== undefined;
      if (target === layer && !rankedApart) continue;
      const targetRank = rankOf(targetPath);
      if (targetRank === undefined || targetRank >= rank) {
        violations.push(`${path} imports ${spec} (${layer} → ${target})`);
      }
    }
  }
  assert.deepEqual(violations, []);
});

test('every file ranked apart from its folder exists', () => {
  const src = join(findRoot(), 'src');
  for (const path of Object.keys(FILE_RANKS)) assert.ok(statSync(join(src, path)).isFile(), path);
});

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
  // Multi-Paxos reuses the Raft core's vocabulary (messages, entries, storage, conf changes).
  paxos: 1.5,
  storage: 2,
  lease: 2,
  mvcc: 3,
  transport: 3,
  client: 3,
  // One group on this node: the host loop (RaftHost), applying committed entries, reads, snapshots.
  replica: 3.5,
  // The simulator drives replica/'s host loop; nothing in src imports the simulator.
  sim: 3.75,
  // One process: data dir, WAL, keyspace, transport, timers, fail-stop; hosts the replicas.
  node: 4,
  // What each etcd service does, over the node and its replicas.
  services: 4.25,
  // ConcordServer: the EtcdBackend the API layer and the CLI use, over the services.
  server: 4.5,
  api: 5,
  cli: 6,
};

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
    const layer = relative(src, file).split('/')[0]!;
    const rank = LAYER_RANKS[layer];
    assert.notEqual(rank, undefined, `src/${layer} has no rank in LAYER_RANKS: place it in the layering`);
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/from '(\.[^']+)'|import\('(\.[^']+)'\)/g)) {
      const spec = match[1] ?? match[2]!;
      const target = relative(src, normalize(join(dirname(file), spec))).split('/')[0]!;
      if (target === layer) continue;
      const targetRank = LAYER_RANKS[target];
      if (targetRank === undefined || targetRank >= rank) {
        violations.push(`${relative(src, file)} imports ${spec} (${layer} → ${target})`);
      }
    }
  }
  assert.deepEqual(violations, []);
});

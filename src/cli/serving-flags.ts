// How node runs a member. Kept apart from concord.ts (which starts a member when loaded) so the
// launchers (bin/concord.js's first line, the dev cluster, the benchmark, the test harness) and
// the member agree on one list.

/**
 * Node flags a member is started with. V8 sizes the young generation when node starts; its
 * default (16 MiB semi-spaces, 32 MiB resident once grown) is sized for throughput-heavy apps.
 * A member's objects are short-lived request and Raft batch objects: 8 MiB semi-spaces cost no
 * measurable throughput (`concord bench put`, 64 clients: 0.40-0.42 vs 0.40-0.44 ms of member
 * CPU per put) and save about 12 MiB of RSS per member.
 */
export const SERVING_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];

/**
 * V8 flags a member sets on itself at start unless node was given them: only flags V8 reads at
 * each collection work this late. A member keeps little live JS data (the keyspace is in LMDB,
 * off the V8 heap) but allocates fast; with V8's default heap growing its old generation grew to
 * about four times the live data before a full collection: RSS after loading 100k keys was
 * twice etcd's.
 */
export const SERVING_V8_FLAGS: Readonly<Record<string, string>> = {
  '--heap-growing-percent': '60',
};

// Prometheus metrics on /metrics, named like etcd's where the meaning is the same.

import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { ConcordServer } from '../server/server.js';

const registry = new Registry();
collectDefaultMetrics({ register: registry });

let bound: ConcordServer | undefined;
const gauge = (name: string, help: string, read: (s: ConcordServer) => number) =>
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      if (bound !== undefined) this.set(read(bound));
    },
  });

gauge('etcd_server_has_leader', 'Whether a leader exists (1) or not (0).', (s) => (s.leaderId !== 0 ? 1 : 0));
gauge('etcd_server_is_leader', 'Whether this member is the leader.', (s) => (s.isLeader ? 1 : 0));
gauge('etcd_server_proposals_applied_total', 'The applied index.', (s) => s.debugStatus().applied);
gauge('etcd_mvcc_db_revision', 'The current keyspace revision.', (s) => s.debugStatus().revision);
gauge('etcd_server_term', 'The current Raft term.', (s) => s.debugStatus().term);

export async function metricsReport(server: ConcordServer): Promise<{ contentType: string; body: string }> {
  bound = server;
  return { contentType: registry.contentType, body: await registry.metrics() };
}

// /dashboard on the client port: the page (dashboard-page.ts, plain HTML and JS, nothing to
// build) and two read-only JSON answers it polls:
//   GET /dashboard/api/self     this member: role, Raft position, space, counters, timings
//   GET /dashboard/api/cluster  the member list, each member's /self fetched by this member
//   GET /dashboard/api/capacity this member's headroom per resource (capacity/report.ts) from its
//                               own numbers now and some seconds ago, with the write rate that
//                               `concordctl check capacity --publish` recorded, if any
// The key browser, watch tail and write actions use the etcd JSON gateway on the same port, so
// they go through the same validation and auth as any client: with auth on, the page's sign-in
// (Authenticate) gives it a token it sends as the Authorization header.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { formatId } from '../replica/ids.js';
import type { ConcordServer } from '../server/server.js';
import { memoryLimitBytes } from './capacity/memory-limit.js';
import { CAPACITY_RECORD_KEY, decodeRecord } from './capacity/recorded.js';
import {
  type CapacityReport,
  capacityReport,
  type MeasuredRate,
  type MemberSample,
} from './capacity/report.js';
import { DASHBOARD_HTML } from './dashboard-page.js';
import type { MemberMetrics } from './metrics.js';

/** How long /cluster waits for one member's /self before showing it as unreachable. */
const MEMBER_FETCH_TIMEOUT_MS = 1500;
/** /capacity compares with the oldest kept sample at least this old ... */
const CAPACITY_WINDOW_MS_MIN = 1000;
/** ... and keeps samples this long (so the rates are over the last minute at most). */
const CAPACITY_WINDOW_MS_MAX = 60_000;
const CAPACITY_SAMPLES_MAX = 120;

export interface CapacityView {
  member: string;
  /** null until two samples are CAPACITY_WINDOW_MS_MIN apart (the first poll only starts the clock). */
  report: CapacityReport | null;
  /** Why no measured write rate is shown: no recording published, or it could not be read. */
  measuredNote: string;
}

export interface MemberSelf {
  name: string;
  memberId: string;
  leaderId: string;
  isLeader: boolean;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  revision: number;
  compactRevision: number;
  dbSizeBytes: number;
  dbSizeInUseBytes: number;
  quotaBytes: number;
  keys: number;
  alarms: Array<{ memberId: string; alarm: string }>;
  counters: { puts: number; deletes: number; txns: number; ranges: number; slowApplies: number };
  timings: Awaited<ReturnType<MemberMetrics['timings']>>;
  nowMs: number;
}

export type DashboardRoute = (
  request: IncomingMessage,
  response: ServerResponse,
  path: string,
) => Promise<boolean>;

export function dashboardRoutes(server: ConcordServer, metrics: MemberMetrics, name: string): DashboardRoute {
  const self = async (): Promise<MemberSelf> => {
    const o = server.observation();
    const s = server.stats;
    return {
      name,
      memberId: formatId(o.memberId),
      leaderId: formatId(o.leaderId),
      isLeader: o.isLeader,
      term: o.term,
      commitIndex: o.commitIndex,
      appliedIndex: o.appliedIndex,
      revision: o.revision,
      compactRevision: Math.max(0, o.compactRevision),
      dbSizeBytes: o.dbSizeBytes,
      dbSizeInUseBytes: o.dbSizeInUseBytes,
      quotaBytes: o.quotaBytes,
      keys: o.keys,
      alarms: o.alarms.map((a) => ({ memberId: formatId(a.memberId), alarm: a.alarm })),
      counters: {
        puts: s.puts,
        deletes: s.deletes,
        txns: s.txns,
        ranges: s.ranges,
        slowApplies: s.slowApplies,
      },
      timings: await metrics.timings(),
      nowMs: Date.now(),
    };
  };

  const samples: MemberSample[] = [];
  const sampleSelf = async (): Promise<MemberSample> => {
    const o = server.observation();
    const cpu = process.cpuUsage();
    const fsync = (await metrics.timings()).walFsync;
    return {
      member: name,
      atMs: Date.now(),
      isLeader: o.isLeader,
      appliedEntries: o.appliedIndex,
      keys: o.keys,
      dbSizeBytes: o.dbSizeBytes,
      dbSizeInUseBytes: o.dbSizeInUseBytes,
      quotaBytes: o.quotaBytes,
      watchers: o.watchers,
      rssBytes: process.memoryUsage.rss(),
      memoryLimitBytes: memoryLimitBytes(),
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      fsyncCount: fsync.count,
      fsyncSeconds: fsync.sum,
    };
  };
  const recordedRate = async (): Promise<{ rate: MeasuredRate | null; note: string }> => {
    const { kvs } = await server.range({ key: Buffer.from(CAPACITY_RECORD_KEY), serializable: true });
    const value = kvs[0]?.value;
    if (value === undefined)
      return { rate: null, note: `no measured write rate: run concordctl check capacity --publish` };
    try {
      return { rate: decodeRecord(Buffer.from(value).toString('utf8'), CAPACITY_RECORD_KEY).rate, note: '' };
    } catch (error) {
      return { rate: null, note: (error as Error).message };
    }
  };
  const capacity = async (): Promise<CapacityView> => {
    const now = await sampleSelf();
    while (samples.length > 1 && now.atMs - (samples[0] as MemberSample).atMs > CAPACITY_WINDOW_MS_MAX)
      samples.shift();
    const before = samples.find((s) => now.atMs - s.atMs >= CAPACITY_WINDOW_MS_MIN);
    if (samples.length >= CAPACITY_SAMPLES_MAX) samples.splice(1, 1);
    samples.push(now);
    const { rate, note } = await recordedRate();
    return {
      member: name,
      report: before === undefined ? null : capacityReport([before], [now], rate),
      measuredNote: note,
    };
  };

  const cluster = async () => {
    const { members } = await server.memberList(false);
    const views = await Promise.all(
      members.map(async (member) => {
        const url = member.clientUrls[0];
        let view: MemberSelf | undefined;
        let error = '';
        if (url === undefined) error = 'not started yet (no client URL published)';
        else {
          try {
            const answer = await fetch(`${url}/dashboard/api/self`, {
              signal: AbortSignal.timeout(MEMBER_FETCH_TIMEOUT_MS),
            });
            if (answer.ok) view = (await answer.json()) as MemberSelf;
            else error = `HTTP ${answer.status}`;
          } catch (cause) {
            error = (cause as Error).message;
          }
        }
        return {
          id: member.id.toString(16),
          name: member.name,
          clientUrls: member.clientUrls,
          peerUrls: member.peerUrls,
          isLearner: member.isLearner,
          reachable: view !== undefined,
          error,
          self: view,
        };
      }),
    );
    return { servedBy: name, members: views, nowMs: Date.now() };
  };

  return async (request, response, path) => {
    if (request.method !== 'GET') return false;
    if (path === '/dashboard' || path === '/dashboard/') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      response.end(DASHBOARD_HTML);
      return true;
    }
    const answers: Record<string, () => Promise<unknown>> = {
      '/dashboard/api/self': self,
      '/dashboard/api/cluster': cluster,
      '/dashboard/api/capacity': capacity,
    };
    const answer = answers[path];
    if (answer === undefined) return false;
    try {
      const body = JSON.stringify(await answer());
      response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      response.end(body);
    } catch (error) {
      response.writeHead(503, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: (error as Error).message }));
    }
    return true;
  };
}

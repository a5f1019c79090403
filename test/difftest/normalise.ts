// What the two sides' answers are reduced to before they are compared. Only what must differ
// between two independent clusters is rewritten, and every rewrite is listed in
// `deliberateDifferences` with its reason; data, revisions, counts, flags, error codes and error
// messages are compared as they are.

import { createHash } from 'node:crypto';

export interface DeliberateDifference {
  name: string;
  why: string;
}

/** Every normalisation the comparison applies, by name (docs/compatibility.md refers to them). */
export const deliberateDifferences: readonly DeliberateDifference[] = [
  { name: 'cluster-id', why: 'cluster IDs are random per cluster; header.cluster_id is dropped' },
  {
    name: 'member-id',
    why: 'member IDs are random per member (and 48-bit in Concord); every member ID (header.member_id, Status.leader, Member.ID, AlarmMember.memberID) becomes the member role (leader, follower, follower2)',
  },
  {
    name: 'member-names-urls',
    why: 'which member (m0, m1, m2; ports chosen per run) becomes leader is chance; member names and URLs become "<role>", "<role> peer/client"',
  },
  {
    name: 'alarm-order',
    why: 'etcd lists alarms (Alarm, Status.errors) in Go map order; both lists are sorted',
  },
  {
    name: 'member-order',
    why: 'etcd lists members in member-ID order; with IDs normalised the list is sorted by role',
  },
  { name: 'raft-term', why: 'elections are timing; header.raft_term and Status.raftTerm are dropped' },
  {
    name: 'raft-index',
    why: 'the raft logs hold different internal entries (conf changes, lease checkpoints, no-ops); Status.raftIndex and raftAppliedIndex are dropped',
  },
  {
    name: 'db-size',
    why: 'bbolt and LMDB lay data out differently; Status.dbSize and dbSizeInUse are dropped',
  },
  {
    name: 'hash',
    why: "Maintenance.Hash hashes etcd's whole bbolt file, a layout Concord does not have (docs/compatibility.md); Hash.hash is dropped. HashKV is etcd's and compared, except once a lease got a server-chosen ID (versions carry the random ID, so the hash is random)",
  },
  {
    name: 'lease-id-server-chosen',
    why: 'a lease granted with ID 0 gets a random ID; such IDs become "lease@<label of the grant>" wherever they appear',
  },
  {
    name: 'lease-ttl-remaining',
    why: 'the remaining TTL counts wall-clock seconds; LeaseTimeToLive.TTL may differ by up to 3 s',
  },
  {
    name: 'lease-order',
    why: 'etcd orders LeaseLeases by expiry time and TimeToLive keys by map order; both lists are sorted',
  },
  {
    name: 'watch-batching',
    why: 'how events are grouped into WatchResponses (and fragments) is timing; events are compared one by one per watcher, and the header of an event response (the revision when it was sent) is dropped',
  },
  {
    name: 'auth-token',
    why: 'simple tokens are random; an Authenticate answer\'s token becomes "a token" (an empty one stays empty)',
  },
  {
    name: 'watch-progress-timer',
    why: 'progress_notify responses come from a timer; a response for a watcher with no events, not created and not canceled is dropped',
  },
];

/**
 * What the generator steers clear of: etcd 3.4 behaviours where etcd's own replicas disagree or a
 * member crashes, Concord's documented limits, and timing no comparison can pin down.
 */
export const avoidedEtcdBehaviours: readonly DeliberateDifference[] = [
  {
    name: 'key-longer-than-1964-bytes',
    why: "LMDB's key limit: Concord refuses longer keys, etcd takes them up to the request size (docs/compatibility.md). Generated keys are at most 1964 bytes.",
  },
  {
    name: 'short-lease-ttl',
    why: 'a lease that expires during a run deletes its keys at a wall-clock moment that differs between the clusters. Generated TTLs are an hour or more (or over the maximum, refused).',
  },
  {
    name: 'lease-order-server-chosen',
    why: 'server-chosen lease IDs are random and differ between the clusters, so a GREATER/LESS compare on leases would compare chance; once a lease got a server-chosen ID, lease compares are EQUAL/NOT_EQUAL only.',
  },
  {
    name: 'watch-start-minus-one',
    why: 'etcd replays history to all lagging watchers in one pass from their smallest start revision; a start of -1 on a never-compacted store makes that pass read nothing, so the other watchers created in the same 100 ms silently miss their replay (timing, and an etcd bug). The runner sends -2 instead (compacted, as both answer).',
  },
  {
    name: 'watch-start-at-compact-revision',
    why: "etcd 3.4's compaction deletes a tombstone at exactly the compact revision (etcd-io/etcd#18089), so a watch starting there misses that delete; Concord keeps the tombstone and delivers the event (docs/compatibility.md). The runner starts a watch at exactly a compact revision that deleted a key one revision later.",
  },
  {
    name: 'auth-empty-range',
    why: "with auth on, etcd 3.4 decides whether a range whose end is not after its key (an empty range) is permitted by walking its permission interval tree with pruning meant for proper intervals, so the answer depends on the tree's shape (e.g. [z, a) is refused although z is granted); Concord decides it with the same interval cover test as for a proper range (docs/compatibility.md). With --auth the generator swaps such bounds (or drops an end equal to the key).",
  },
  {
    name: 'auth-txn-range-replicas',
    why: "with auth on, a member that did not receive a txn drops its top-level ranges (removeNeedlessRangeReqs) before the permission check, so a writing txn with a range the user may not read is refused by the member that answers and applied by the others: etcd's replicas then differ (seen as a follower one revision behind the others). With --auth the top-level ranges of writing txns read a key the user may read.",
  },
  {
    name: 'auth-from-key-watch',
    why: 'etcd 3.4 checks a watch whose range end is "\\0" (from its key to the end of the keyspace) as if the end were empty, so a user with permission on foo/ only watches every key from foo/3 on, zzz included; Concord checks the whole range and refuses the watch with permission denied (docs/compatibility.md). With --auth such watches watch their key alone.',
  },
  {
    name: 'auth-nested-txn',
    why: 'etcd 3.4 checks no permission for the operations of a txn nested in a txn, so a user writes and reads keys it has no permission on that way (an RBAC bypass fixed by etcd later: etcd-io/etcd#21677, #21689); Concord checks them at every depth and answers permission denied (docs/compatibility.md). With --auth the generator makes no nested txns.',
  },
  {
    name: 'auth-alarm-applier',
    why: 'etcd 3.4 applies an alarm activation by replacing its applier with a capped (NOSPACE) or corrupt one wrapped around the bare backend applier, without the auth applier, so until the alarm is deactivated (or the member restarts) writes get no permission check: a non-root user deletes keys it may not write. Concord keeps checking (docs/compatibility.md). With --auth alarm activations become alarm lists.',
  },
  {
    name: 'etcd-3.5-calls',
    why: 'Concord also serves AuthStatus and MemberListRequest.linearizable (etcd 3.5); etcd 3.4 answers UNIMPLEMENTED or ignores the field. Not generated, except linearizable, which 3.4 ignores and does not change the answer.',
  },
  {
    name: 'txn-range-revision-replicas',
    why: 'a member that did not receive a txn drops its ranges before applying it (removeNeedlessRangeReqs), so a writing txn whose range revision is compacted or in the future is refused by the member that answers and applied by the others; Concord refuses it on every member. Writing txns only read at the current revision (a 1-member regression case covers the answer).',
  },
  {
    name: 'txn-ignore-put-after-from-key-delete',
    why: 'etcd panics (the member exits) applying a txn whose ignore_value/ignore_lease put follows a from-key ("\\0" range end) delete of that key: its checks see the key as it was before the txn. Concord refuses the txn with "etcdserver: key not found" and changes nothing. Txns with a from-key delete get plain puts.',
  },
];

/** How one side names what must differ: member roles, URLs, server-chosen lease IDs. */
export interface SideIdentity {
  memberRole(id: string): string;
  nameRole(name: string): string;
  urlRole(url: string): string;
  leaseName(id: string): string;
  /** Whether a lease got a server-chosen (random) ID in this run. */
  serverChosenLeases(): boolean;
}

export type WireObject = Record<string, unknown>;

/** A number compared with a tolerance (see lease-ttl-remaining). */
export interface Approx {
  approx: number;
  tolerance: number;
}

const inlineBytesMax = 160;

/** Bytes as latin-1 text (short) or length + digest (long), so they print and compare. */
export function bytesText(bytes: Buffer): string {
  if (bytes.length <= inlineBytesMax) return bytes.toString('latin1');
  const digest = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  return `<${bytes.length} bytes ${bytes.subarray(0, 8).toString('latin1')}... sha256:${digest}>`;
}

function plain(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return bytesText(value);
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object') {
    const out: WireObject = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  return value;
}

function header(value: unknown, id: SideIdentity): unknown {
  if (value === null || value === undefined) return value ?? null;
  const h = value as WireObject;
  return { member: id.memberRole(String(h.member_id)), revision: h.revision };
}

function keyValue(value: unknown, id: SideIdentity): unknown {
  if (value === null || value === undefined) return null;
  const kv = value as WireObject;
  return { ...kv, lease: id.leaseName(String(kv.lease)) };
}

function keyValues(value: unknown, id: SideIdentity): unknown {
  return Array.isArray(value) ? value.map((kv) => keyValue(kv, id)) : value;
}

function rangeResponse(r: WireObject, id: SideIdentity): WireObject {
  return { ...r, header: header(r.header, id), kvs: keyValues(r.kvs, id) };
}

function responseOp(op: WireObject, id: SideIdentity): WireObject {
  if (op.response_range) return { range: rangeResponse(op.response_range as WireObject, id) };
  if (op.response_put) {
    const put = op.response_put as WireObject;
    return { put: { header: header(put.header, id), prev_kv: keyValue(put.prev_kv, id) } };
  }
  if (op.response_delete_range) {
    const d = op.response_delete_range as WireObject;
    return { delete: { ...d, header: header(d.header, id), prev_kvs: keyValues(d.prev_kvs, id) } };
  }
  if (op.response_txn) return { txn: txnResponse(op.response_txn as WireObject, id) };
  return { none: op };
}

function txnResponse(r: WireObject, id: SideIdentity): WireObject {
  const responses = Array.isArray(r.responses)
    ? r.responses.map((op) => responseOp(op as WireObject, id))
    : [];
  return { header: header(r.header, id), succeeded: r.succeeded, responses };
}

function member(m: WireObject, id: SideIdentity): WireObject {
  const urls = (v: unknown) => (Array.isArray(v) ? v.map((u) => id.urlRole(String(u))) : v);
  return {
    ID: id.memberRole(String(m.ID)),
    name: id.nameRole(String(m.name)),
    peerURLs: urls(m.peerURLs),
    clientURLs: urls(m.clientURLs),
    isLearner: m.isLearner,
  };
}

function sortedBy<T>(items: T[], keyOf: (item: T) => string): T[] {
  return [...items].sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0));
}

/** The normalised answer of a unary method ("etcdserverpb.KV/Range"), decoded from the wire. */
export function normaliseResponse(method: string, response: WireObject, id: SideIdentity): unknown {
  const r = plain(response) as WireObject;
  const name = method.slice(method.indexOf('/') + 1);
  switch (name) {
    case 'Range':
      return rangeResponse(r, id);
    case 'Put':
      return { header: header(r.header, id), prev_kv: keyValue(r.prev_kv, id) };
    case 'DeleteRange':
      return { ...r, header: header(r.header, id), prev_kvs: keyValues(r.prev_kvs, id) };
    case 'Txn':
      return txnResponse(r, id);
    case 'LeaseGrant':
      return { ...r, header: header(r.header, id), ID: id.leaseName(String(r.ID)) };
    case 'LeaseKeepAlive':
      return { ...r, header: header(r.header, id), ID: id.leaseName(String(r.ID)) };
    case 'LeaseTimeToLive': {
      const ttl = Number(r.TTL);
      return {
        ...r,
        header: header(r.header, id),
        ID: id.leaseName(String(r.ID)),
        TTL: ttl > 0 ? ({ approx: ttl, tolerance: 3 } satisfies Approx) : ttl,
        keys: Array.isArray(r.keys) ? [...r.keys].sort() : r.keys,
      };
    }
    case 'LeaseLeases': {
      const leases = Array.isArray(r.leases) ? (r.leases as WireObject[]) : [];
      return {
        header: header(r.header, id),
        leases: sortedBy(
          leases.map((l) => id.leaseName(String(l.ID))),
          (l) => l,
        ),
      };
    }
    case 'MemberList': {
      const members = Array.isArray(r.members) ? (r.members as WireObject[]).map((m) => member(m, id)) : [];
      return { header: header(r.header, id), members: sortedBy(members, (m) => String(m.ID)) };
    }
    case 'Status':
      return {
        header: header(r.header, id),
        version: r.version,
        leader: id.memberRole(String(r.leader)),
        errors: Array.isArray(r.errors)
          ? r.errors
              .map((e) =>
                String(e).replace(/memberID:(\d+)/g, (_, m: string) => `memberID:${id.memberRole(m)}`),
              )
              .sort()
          : r.errors,
        isLearner: r.isLearner,
      };
    case 'HashKV':
      return {
        header: header(r.header, id),
        // Versions carry their lease's ID, so a random one makes the hash random too.
        hash: id.serverChosenLeases() ? 'hash over server-chosen lease IDs' : r.hash,
        compact_revision: r.compact_revision,
      };
    case 'Hash':
      return { header: header(r.header, id) };
    case 'Authenticate':
      return { ...r, header: header(r.header, id), token: r.token ? 'a token' : r.token };
    case 'Alarm': {
      const alarms = Array.isArray(r.alarms) ? (r.alarms as WireObject[]) : [];
      return {
        header: header(r.header, id),
        alarms: sortedBy(
          alarms.map((a) => ({ memberID: id.memberRole(String(a.memberID)), alarm: a.alarm })),
          (a) => `${a.memberID} ${String(a.alarm)}`,
        ),
      };
    }
    default:
      return { ...r, header: header(r.header, id) };
  }
}

/** One watch event, as compared per watcher. */
export function normaliseEvent(event: WireObject, id: SideIdentity): unknown {
  const e = plain(event) as WireObject;
  return { type: e.type, kv: keyValue(e.kv, id), prev_kv: keyValue(e.prev_kv, id) };
}

/** A watch response that is not an event batch (created, canceled, compacted, progress). */
export function normaliseWatchControl(response: WireObject, id: SideIdentity, withHeader: boolean): unknown {
  const r = plain(response) as WireObject;
  const out: WireObject = {
    watch_id: r.watch_id,
    created: r.created,
    canceled: r.canceled,
    compact_revision: r.compact_revision,
    cancel_reason: r.cancel_reason,
  };
  if (withHeader) out.header = header(r.header, id);
  const events = Array.isArray(r.events) ? r.events : [];
  if (events.length > 0) out.events = events.map((e) => normaliseEvent(e as WireObject, id));
  return out;
}

function isApprox(value: unknown): value is Approx {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as Approx).approx === 'number' &&
    typeof (value as Approx).tolerance === 'number' &&
    Object.keys(value).length === 2
  );
}

/** Deep equality of normalised values; Approx numbers match within their tolerance. */
export function sameNormalised(a: unknown, b: unknown): boolean {
  if (isApprox(a) && isApprox(b)) return Math.abs(a.approx - b.approx) <= Math.max(a.tolerance, b.tolerance);
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((item, i) => sameNormalised(item, b[i]));
  }
  const ka = Object.keys(a as WireObject).filter((k) => (a as WireObject)[k] !== undefined);
  const kb = Object.keys(b as WireObject).filter((k) => (b as WireObject)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => sameNormalised((a as WireObject)[k], (b as WireObject)[k]));
}

/** The paths where two normalised values differ, each with both values (for reports). */
export function differences(a: unknown, b: unknown, path = '$', out: string[] = [], max = 12): string[] {
  if (out.length >= max || sameNormalised(a, b)) return out;
  const bothObjects = a !== null && b !== null && typeof a === 'object' && typeof b === 'object';
  if (bothObjects && Array.isArray(a) === Array.isArray(b) && !isApprox(a) && !isApprox(b)) {
    const keys = new Set([...Object.keys(a as WireObject), ...Object.keys(b as WireObject)]);
    for (const k of keys) differences((a as WireObject)[k], (b as WireObject)[k], `${path}.${k}`, out, max);
    return out;
  }
  out.push(`${path}: etcd ${JSON.stringify(a)} | concord ${JSON.stringify(b)}`);
  return out;
}

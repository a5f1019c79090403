// Unary etcd v3 methods as plain async functions from wire request to wire response. The gRPC
// server and the JSON gateway both call these, so validation and error mapping are identical.

import type { AlarmAction, AlarmType, EtcdBackend, HeaderInfo } from '../server/backend.js';
import {
  asBuffer,
  deleteRangeFromWire,
  deleteRangeToWire,
  headerToWire,
  int64ToWire,
  leaderKeyFromWire,
  leaderKeyToWire,
  memberToWire,
  putFromWire,
  putToWire,
  rangeFromWire,
  rangeToWire,
  txnFromWire,
  txnToWire,
  uint64ToWire,
  wireToBigInt,
  wireToNumber,
} from './convert.js';
import { ApiRequestError, EtcdError } from './errors.js';
import {
  checkDeleteRange,
  checkPut,
  checkRange,
  checkRequestSize,
  checkTxn,
  type ValidationLimits,
} from './validate.js';
import type {
  WireCompactionRequest,
  WireDeleteRangeRequest,
  WireHeader,
  WireLeaderKey,
  WirePutRequest,
  WireRangeRequest,
  WireTxnRequest,
} from './wire.js';

// Wire objects for the small messages are read field by field; proto-loader fills defaults.
type WireObject = Record<string, unknown>;
export type UnaryHandler = (request: WireObject, signal: AbortSignal) => Promise<object>;

export interface HandlerContext {
  backend: EtcdBackend;
  limits: ValidationLimits;
}

function str(request: WireObject, field: string): string {
  const value = request[field];
  return typeof value === 'string' || typeof value === 'number' ? String(value) : '0';
}

function bytes(request: WireObject, field: string): Buffer {
  const value = request[field];
  return Buffer.isBuffer(value) ? value : Buffer.alloc(0);
}

function strings(request: WireObject, field: string): string[] {
  const value = request[field];
  return Array.isArray(value) ? value.map(String) : [];
}

function leaderKeyOf(request: WireObject): WireLeaderKey {
  const leader = request.leader as WireLeaderKey | null | undefined;
  if (leader === null || leader === undefined) throw new EtcdError('electionMissingLeaderKey');
  return leader;
}

const alarmActions: Record<string, AlarmAction> = {
  GET: 'get',
  ACTIVATE: 'activate',
  DEACTIVATE: 'deactivate',
};
const alarmTypes: Record<string, AlarmType> = { NONE: 'none', NOSPACE: 'nospace', CORRUPT: 'corrupt' };
const alarmTypeNames: Record<AlarmType, string> = { none: 'NONE', nospace: 'NOSPACE', corrupt: 'CORRUPT' };

function kvHandlers({ backend, limits }: HandlerContext): Record<string, UnaryHandler> {
  return {
    'KV/Range': async (request) => {
      const range = rangeFromWire(request as unknown as WireRangeRequest);
      checkRange(range);
      const response = await backend.range(range);
      return rangeToWire(response, headerToWire(response.header));
    },
    'KV/Put': async (request) => {
      const put = putFromWire(request as unknown as WirePutRequest);
      checkPut(put);
      checkRequestSize({ type: 'put', request: put }, limits);
      const response = await backend.put(put);
      return putToWire(response, headerToWire(response.header));
    },
    'KV/DeleteRange': async (request) => {
      const deleteRange = deleteRangeFromWire(request as unknown as WireDeleteRangeRequest);
      checkDeleteRange(deleteRange);
      const response = await backend.deleteRange(deleteRange);
      return deleteRangeToWire(response, headerToWire(response.header));
    },
    'KV/Txn': async (request) => {
      const txn = txnFromWire(request as unknown as WireTxnRequest);
      checkTxn(txn, limits);
      checkRequestSize({ type: 'txn', request: txn }, limits);
      const response = await backend.txn(txn);
      return txnToWire(response, headerToWire(response.header));
    },
    'KV/Compact': async (request) => {
      const compaction = request as unknown as WireCompactionRequest;
      const response = await backend.compact(wireToNumber(compaction.revision), compaction.physical);
      return { header: headerToWire(response.header) };
    },
  };
}

function leaseHandlers({ backend }: HandlerContext): Record<string, UnaryHandler> {
  return {
    'Lease/LeaseGrant': async (request) => {
      // A TTL over etcd's maximum is refused by the backend, after the NOSPACE check (as etcd).
      const ttlSeconds = wireToNumber(str(request, 'TTL'));
      const response = await backend.leaseGrant(ttlSeconds, wireToBigInt(str(request, 'ID')));
      return {
        header: headerToWire(response.header),
        ID: int64ToWire(response.id),
        TTL: response.ttlSeconds,
        error: '',
      };
    },
    'Lease/LeaseRevoke': async (request) => {
      const response = await backend.leaseRevoke(wireToBigInt(str(request, 'ID')));
      return { header: headerToWire(response.header) };
    },
    'Lease/LeaseTimeToLive': async (request) => {
      const response = await backend.leaseTimeToLive(wireToBigInt(str(request, 'ID')), request.keys === true);
      return {
        header: headerToWire(response.header),
        ID: int64ToWire(response.id),
        TTL: response.ttlSeconds,
        grantedTTL: response.grantedTtlSeconds,
        keys: response.keys.map(asBuffer),
      };
    },
    'Lease/LeaseLeases': async () => {
      const response = await backend.leaseLeases();
      return {
        header: headerToWire(response.header),
        leases: response.ids.map((id) => ({ ID: int64ToWire(id) })),
      };
    },
  };
}

/** etcd's Cluster service fills the header without a revision (its ClusterServer.header). */
function clusterHeaderToWire(header: HeaderInfo): WireHeader {
  return headerToWire({ ...header, revision: 0 });
}

function clusterHandlers({ backend }: HandlerContext): Record<string, UnaryHandler> {
  // etcd's cluster service fills no revision in its headers (cluster_id, member_id, raft_term only).
  const membersReply = (response: Awaited<ReturnType<EtcdBackend['memberList']>>) => ({
    header: clusterHeaderToWire(response.header),
    members: response.members.map(memberToWire),
  });
  return {
    'Cluster/MemberList': async (request) =>
      membersReply(await backend.memberList(request.linearizable === true)),
    'Cluster/MemberAdd': async (request) => {
      const peerUrls = strings(request, 'peerURLs');
      checkPeerUrls(peerUrls);
      const response = await backend.memberAdd(peerUrls, request.isLearner === true);
      return { ...membersReply(response), member: memberToWire(response.member) };
    },
    'Cluster/MemberRemove': async (request) =>
      membersReply(await backend.memberRemove(wireToBigInt(str(request, 'ID')))),
    'Cluster/MemberUpdate': async (request) => {
      const peerUrls = strings(request, 'peerURLs');
      checkPeerUrls(peerUrls);
      return membersReply(await backend.memberUpdate(wireToBigInt(str(request, 'ID')), peerUrls));
    },
    'Cluster/MemberPromote': async (request) =>
      membersReply(await backend.memberPromote(wireToBigInt(str(request, 'ID')))),
  };
}

function checkPeerUrls(peerUrls: string[]): void {
  if (peerUrls.length === 0) throw new EtcdError('memberBadUrls');
  for (const url of peerUrls) {
    if (!URL.canParse(url)) throw new EtcdError('memberBadUrls');
    const protocol = new URL(url).protocol;
    if (protocol !== 'http:' && protocol !== 'https:') throw new EtcdError('memberBadUrls');
  }
}

function maintenanceHandlers({ backend }: HandlerContext): Record<string, UnaryHandler> {
  return {
    'Maintenance/Status': async () => {
      const s = await backend.status();
      return {
        header: headerToWire(s.header),
        version: s.version,
        dbSize: s.dbSizeBytes,
        leader: uint64ToWire(s.leader),
        raftIndex: uint64ToWire(s.raftIndex),
        raftTerm: uint64ToWire(s.raftTerm),
        raftAppliedIndex: uint64ToWire(s.raftAppliedIndex),
        errors: s.errors,
        dbSizeInUse: s.dbSizeInUseBytes,
        isLearner: s.isLearner,
      };
    },
    'Maintenance/Alarm': async (request) => {
      const action = alarmActions[String(request.action)] ?? 'get';
      const alarm = alarmTypes[String(request.alarm)] ?? 'none';
      const response = await backend.alarm(action, wireToBigInt(str(request, 'memberID')), alarm);
      // etcd answers Alarm without a header (its maintenance server passes the applied answer on).
      return {
        alarms: response.alarms.map((a) => ({
          memberID: uint64ToWire(a.memberId),
          alarm: alarmTypeNames[a.alarm],
        })),
      };
    },
    // etcd's Defragment and MoveLeader answers carry no header.
    'Maintenance/Defragment': async () => {
      await backend.defragment();
      return {};
    },
    'Maintenance/Hash': async () => {
      const response = await backend.hash();
      return { header: headerToWire(response.header), hash: response.hash };
    },
    'Maintenance/HashKV': async (request) => {
      const response = await backend.hashKV(wireToNumber(str(request, 'revision')));
      return {
        header: headerToWire(response.header),
        hash: response.hash,
        compact_revision: response.compactRevision,
      };
    },
    'Maintenance/MoveLeader': async (request) => {
      await backend.moveLeader(wireToBigInt(str(request, 'targetID')));
      return {};
    },
    'Maintenance/Downgrade': async () => {
      throw new ApiRequestError(12, 'concord: cluster downgrade is not supported');
    },
  };
}

function lockHandlers({ backend }: HandlerContext): Record<string, UnaryHandler> {
  return {
    'Lock/Lock': async (request, signal) => {
      const name = bytes(request, 'name');
      if (name.length === 0) throw new EtcdError('lockMissingName');
      const response = await backend.lock(name, wireToBigInt(str(request, 'lease')), signal);
      return { header: headerToWire(response.header), key: asBuffer(response.key) };
    },
    'Lock/Unlock': async (request) => {
      const key = bytes(request, 'key');
      if (key.length === 0) throw new EtcdError('lockMissingKey');
      return { header: headerToWire((await backend.unlock(key)).header) };
    },
  };
}

function electionHandlers({ backend }: HandlerContext): Record<string, UnaryHandler> {
  return {
    'Election/Campaign': async (request, signal) => {
      const name = bytes(request, 'name');
      const lease = wireToBigInt(str(request, 'lease'));
      const response = await backend.campaign(name, lease, bytes(request, 'value'), signal);
      return { header: headerToWire(response.header), leader: leaderKeyToWire(response.leader) };
    },
    'Election/Proclaim': async (request) => {
      const leader = leaderKeyFromWire(leaderKeyOf(request));
      return { header: headerToWire((await backend.proclaim(leader, bytes(request, 'value'))).header) };
    },
    'Election/Leader': async (request) => {
      const response = await backend.leader(bytes(request, 'name'));
      const { kv } = response;
      return {
        header: headerToWire(response.header),
        kv: {
          key: asBuffer(kv.key),
          create_revision: kv.createRevision,
          mod_revision: kv.modRevision,
          version: kv.version,
          value: asBuffer(kv.value),
          lease: int64ToWire(kv.lease),
        },
      };
    },
    'Election/Resign': async (request) => {
      const leader = leaderKeyFromWire(leaderKeyOf(request));
      return { header: headerToWire((await backend.resign(leader)).header) };
    },
  };
}

/**
 * Auth is not implemented yet: we answer as an etcd whose auth is disabled and that has no
 * users or roles, and refuse changes with a clear message rather than pretending to store them.
 */
function authHandlers({ backend }: HandlerContext): Record<string, UnaryHandler> {
  const header = () => headerToWire(backend.header());
  const unsupported = async (): Promise<object> => {
    throw new ApiRequestError(12, 'concord: user and role management is not implemented yet');
  };
  return {
    'Auth/AuthStatus': async () => ({ header: header(), enabled: false, authRevision: 0 }),
    'Auth/AuthDisable': async () => ({ header: header() }),
    'Auth/AuthEnable': async () => {
      throw new EtcdError('rootUserNotExist');
    },
    'Auth/Authenticate': async () => {
      throw new EtcdError('authNotEnabled');
    },
    'Auth/UserList': async () => ({ header: header(), users: [] }),
    'Auth/RoleList': async () => ({ header: header(), roles: [] }),
    'Auth/UserGet': async () => {
      throw new EtcdError('userNotFound');
    },
    'Auth/RoleGet': async () => {
      throw new EtcdError('roleNotFound');
    },
    'Auth/UserDelete': async () => {
      throw new EtcdError('userNotFound');
    },
    'Auth/RoleDelete': async () => {
      throw new EtcdError('roleNotFound');
    },
    'Auth/UserAdd': unsupported,
    'Auth/UserChangePassword': unsupported,
    'Auth/UserGrantRole': unsupported,
    'Auth/UserRevokeRole': unsupported,
    'Auth/RoleAdd': unsupported,
    'Auth/RoleGrantPermission': unsupported,
    'Auth/RoleRevokePermission': unsupported,
  };
}

/** All unary methods, keyed "Service/Method" (service name without its package). */
export function unaryHandlers(context: HandlerContext): Record<string, UnaryHandler> {
  return {
    ...kvHandlers(context),
    ...leaseHandlers(context),
    ...clusterHandlers(context),
    ...maintenanceHandlers(context),
    ...lockHandlers(context),
    ...electionHandlers(context),
    ...authHandlers(context),
  };
}

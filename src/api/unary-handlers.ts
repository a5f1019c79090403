// Unary etcd v3 methods as plain async functions from wire request to wire response. The gRPC
// server and the JSON gateway both call these, so validation and error mapping are identical.

import type {
  AlarmAction,
  AlarmType,
  AuthInfo,
  Credentials,
  EtcdBackend,
  HeaderInfo,
  Permission,
  PermissionType,
  ShardView,
} from '../services/backend.js';
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
import { ApiRequestError, EtcdError, type EtcdErrorCode } from './errors.js';
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
export type UnaryHandler = (
  request: WireObject,
  signal: AbortSignal,
  credentials: Credentials,
) => Promise<object>;

/** Methods whose handler uses the abort signal (they block until something happens). */
export const SIGNAL_METHODS: ReadonlySet<string> = new Set(['Lock/Lock', 'Election/Campaign']);

/** Who the call runs as; throws etcd's invalid-token error for a token this member refuses. */
function callerOf(backend: EtcdBackend, credentials: Credentials): AuthInfo | undefined {
  if (credentials.token === undefined && credentials.commonName === undefined) return undefined;
  return backend.auth?.resolve(credentials);
}

/**
 * etcd's maintenance service checks admin rights itself and returns the auth package's errors
 * untranslated ("auth: …", gRPC Unknown).
 */
export function checkMaintenanceAdmin(backend: EtcdBackend, credentials: Credentials): void {
  const auth = backend.auth;
  if (auth === undefined) return;
  untranslatedAuth(() => auth.checkAdmin(callerOf(backend, credentials)));
}

const untranslatedCodes: Partial<Record<string, EtcdErrorCode>> = {
  invalidAuthToken: 'maintenanceInvalidAuthToken',
  userEmpty: 'maintenanceUserEmpty',
  permissionDenied: 'maintenancePermissionDenied',
};

/** Runs `work`, turning auth errors into the auth package's own ("auth: …", gRPC Unknown). */
function untranslatedAuth<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    const code = error instanceof EtcdError ? untranslatedCodes[error.code] : undefined;
    throw code === undefined ? error : new EtcdError(code);
  }
}

/**
 * etcd's v3lock and v3election make their KV calls through a client: an auth error from them
 * reaches the caller as a plain error (gRPC Unknown) with etcd's text.
 */
async function asPlainErrors<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof EtcdError && plainInConcurrency.has(error.code))
      throw new ApiRequestError(2, error.message);
    throw error;
  }
}

const plainInConcurrency: ReadonlySet<string> = new Set([
  'userEmpty',
  'permissionDenied',
  'invalidAuthToken',
  'authOldRevision',
]);

/** etcd's membership changes need an admin (its checkMembershipOperationPermission). */
function checkMembershipAdmin(backend: EtcdBackend, credentials: Credentials): void {
  backend.auth?.checkAdmin(callerOf(backend, credentials));
}

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
    'KV/Range': async (request, _signal, credentials) => {
      const range = rangeFromWire(request as unknown as WireRangeRequest);
      checkRange(range);
      const response = await backend.range(range, callerOf(backend, credentials));
      return rangeToWire(response, headerToWire(response.header));
    },
    'KV/Put': async (request, _signal, credentials) => {
      const put = putFromWire(request as unknown as WirePutRequest);
      checkPut(put);
      checkRequestSize({ type: 'put', request: put }, limits);
      const response = await backend.put(put, callerOf(backend, credentials));
      return putToWire(response, headerToWire(response.header));
    },
    'KV/DeleteRange': async (request, _signal, credentials) => {
      const deleteRange = deleteRangeFromWire(request as unknown as WireDeleteRangeRequest);
      checkDeleteRange(deleteRange);
      const response = await backend.deleteRange(deleteRange, callerOf(backend, credentials));
      return deleteRangeToWire(response, headerToWire(response.header));
    },
    'KV/Txn': async (request, _signal, credentials) => {
      const txn = txnFromWire(request as unknown as WireTxnRequest);
      checkTxn(txn, limits);
      checkRequestSize({ type: 'txn', request: txn }, limits);
      const response = await backend.txn(txn, callerOf(backend, credentials));
      return txnToWire(response, headerToWire(response.header));
    },
    'KV/Compact': async (request, _signal, credentials) => {
      callerOf(backend, credentials);
      const compaction = request as unknown as WireCompactionRequest;
      const response = await backend.compact(wireToNumber(compaction.revision), compaction.physical);
      return { header: headerToWire(response.header) };
    },
  };
}

function leaseHandlers({ backend }: HandlerContext): Record<string, UnaryHandler> {
  return {
    'Lease/LeaseGrant': async (request, _signal, credentials) => {
      callerOf(backend, credentials);
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
    'Lease/LeaseRevoke': async (request, _signal, credentials) => {
      const caller = callerOf(backend, credentials);
      const response = await backend.leaseRevoke(wireToBigInt(str(request, 'ID')), caller);
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
    'Cluster/MemberAdd': async (request, _signal, credentials) => {
      checkMembershipAdmin(backend, credentials);
      const peerUrls = strings(request, 'peerURLs');
      checkPeerUrls(peerUrls);
      const response = await backend.memberAdd(peerUrls, request.isLearner === true);
      return { ...membersReply(response), member: memberToWire(response.member) };
    },
    'Cluster/MemberRemove': async (request, _signal, credentials) => {
      checkMembershipAdmin(backend, credentials);
      return membersReply(await backend.memberRemove(wireToBigInt(str(request, 'ID'))));
    },
    'Cluster/MemberUpdate': async (request, _signal, credentials) => {
      checkMembershipAdmin(backend, credentials);
      const peerUrls = strings(request, 'peerURLs');
      checkPeerUrls(peerUrls);
      return membersReply(await backend.memberUpdate(wireToBigInt(str(request, 'ID')), peerUrls));
    },
    'Cluster/MemberPromote': async (request, _signal, credentials) => {
      checkMembershipAdmin(backend, credentials);
      return membersReply(await backend.memberPromote(wireToBigInt(str(request, 'ID'))));
    },
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
    'Maintenance/Alarm': async (request, _signal, credentials) => {
      // etcd resolves the token of this Raft request and returns its error untranslated.
      untranslatedAuth(() => callerOf(backend, credentials));
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
    'Maintenance/Defragment': async (_request, _signal, credentials) => {
      checkMaintenanceAdmin(backend, credentials);
      await backend.defragment();
      return {};
    },
    'Maintenance/Hash': async (_request, _signal, credentials) => {
      checkMaintenanceAdmin(backend, credentials);
      const response = await backend.hash();
      return { header: headerToWire(response.header), hash: response.hash };
    },
    'Maintenance/HashKV': async (request, _signal, credentials) => {
      checkMaintenanceAdmin(backend, credentials);
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
    'Lock/Lock': async (request, signal, credentials) => {
      const name = bytes(request, 'name');
      if (name.length === 0) throw new EtcdError('lockMissingName');
      const caller = callerOf(backend, credentials);
      const response = await asPlainErrors(() =>
        backend.lock(name, wireToBigInt(str(request, 'lease')), signal, caller),
      );
      return { header: headerToWire(response.header), key: asBuffer(response.key) };
    },
    'Lock/Unlock': async (request, _signal, credentials) => {
      const key = bytes(request, 'key');
      if (key.length === 0) throw new EtcdError('lockMissingKey');
      return {
        header: headerToWire(
          (await asPlainErrors(() => backend.unlock(key, callerOf(backend, credentials)))).header,
        ),
      };
    },
  };
}

function electionHandlers({ backend }: HandlerContext): Record<string, UnaryHandler> {
  return {
    'Election/Campaign': async (request, signal, credentials) => {
      const name = bytes(request, 'name');
      const lease = wireToBigInt(str(request, 'lease'));
      const caller = callerOf(backend, credentials);
      const response = await asPlainErrors(() =>
        backend.campaign(name, lease, bytes(request, 'value'), signal, caller),
      );
      return { header: headerToWire(response.header), leader: leaderKeyToWire(response.leader) };
    },
    'Election/Proclaim': async (request, _signal, credentials) => {
      const leader = leaderKeyFromWire(leaderKeyOf(request));
      const caller = callerOf(backend, credentials);
      return {
        header: headerToWire(
          (await asPlainErrors(() => backend.proclaim(leader, bytes(request, 'value'), caller))).header,
        ),
      };
    },
    'Election/Leader': async (request, _signal, credentials) => {
      const response = await asPlainErrors(() =>
        backend.leader(bytes(request, 'name'), callerOf(backend, credentials)),
      );
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
    'Election/Resign': async (request, _signal, credentials) => {
      const leader = leaderKeyFromWire(leaderKeyOf(request));
      return {
        header: headerToWire(
          (await asPlainErrors(() => backend.resign(leader, callerOf(backend, credentials)))).header,
        ),
      };
    },
  };
}

const permissionTypes: Record<string, PermissionType> = {
  READ: 'READ',
  WRITE: 'WRITE',
  READWRITE: 'READWRITE',
};

function permissionFromWire(request: WireObject): Permission {
  const perm = (request.perm ?? {}) as WireObject;
  return {
    permType: permissionTypes[String(perm.permType)] ?? 'READ',
    key: bytes(perm, 'key'),
    rangeEnd: bytes(perm, 'range_end'),
  };
}

/** etcd's Auth service. A backend without auth answers as an etcd whose auth is disabled. */
function authHandlers({ backend }: HandlerContext): Record<string, UnaryHandler> {
  const header = () => headerToWire(backend.header());
  const auth = backend.auth;
  if (auth === undefined) return disabledAuthHandlers(header);
  const reply = (response: { header: HeaderInfo }) => ({ header: headerToWire(response.header) });
  return {
    'Auth/AuthStatus': async () => {
      const response = await auth.authStatus();
      return {
        header: headerToWire(response.header),
        enabled: response.enabled,
        authRevision: uint64ToWire(BigInt(response.authRevision)),
      };
    },
    'Auth/AuthEnable': async (_request, _signal, credentials) =>
      reply(await auth.authEnable(callerOf(backend, credentials))),
    'Auth/AuthDisable': async (_request, _signal, credentials) =>
      reply(await auth.authDisable(callerOf(backend, credentials))),
    'Auth/Authenticate': async (request, _signal, credentials) => {
      // A Raft request in etcd: a token it carries is resolved (and refused) first.
      callerOf(backend, credentials);
      const response = await auth.authenticate(str(request, 'name'), strOrEmpty(request, 'password'));
      return { header: headerToWire(response.header), token: response.token };
    },
    'Auth/UserAdd': async (request, _signal, credentials) => {
      const options = (request.options ?? {}) as WireObject;
      return reply(
        await auth.userAdd(
          callerOf(backend, credentials),
          strOrEmpty(request, 'name'),
          strOrEmpty(request, 'password'),
          {
            noPassword: options.no_password === true,
            hashedPassword: strOrEmpty(request, 'hashedPassword'),
          },
        ),
      );
    },
    'Auth/UserGet': async (request, _signal, credentials) => {
      const response = await auth.userGet(callerOf(backend, credentials), strOrEmpty(request, 'name'));
      return { header: headerToWire(response.header), roles: response.roles };
    },
    'Auth/UserList': async (_request, _signal, credentials) => {
      const response = await auth.userList(callerOf(backend, credentials));
      return { header: headerToWire(response.header), users: response.users };
    },
    'Auth/UserDelete': async (request, _signal, credentials) =>
      reply(await auth.userDelete(callerOf(backend, credentials), strOrEmpty(request, 'name'))),
    'Auth/UserChangePassword': async (request, _signal, credentials) =>
      reply(
        await auth.userChangePassword(
          callerOf(backend, credentials),
          strOrEmpty(request, 'name'),
          strOrEmpty(request, 'password'),
          strOrEmpty(request, 'hashedPassword'),
        ),
      ),
    'Auth/UserGrantRole': async (request, _signal, credentials) =>
      reply(
        await auth.userGrantRole(
          callerOf(backend, credentials),
          strOrEmpty(request, 'user'),
          strOrEmpty(request, 'role'),
        ),
      ),
    'Auth/UserRevokeRole': async (request, _signal, credentials) =>
      reply(
        await auth.userRevokeRole(
          callerOf(backend, credentials),
          strOrEmpty(request, 'name'),
          strOrEmpty(request, 'role'),
        ),
      ),
    'Auth/RoleAdd': async (request, _signal, credentials) =>
      reply(await auth.roleAdd(callerOf(backend, credentials), strOrEmpty(request, 'name'))),
    'Auth/RoleGet': async (request, _signal, credentials) => {
      const response = await auth.roleGet(callerOf(backend, credentials), strOrEmpty(request, 'role'));
      return {
        header: headerToWire(response.header),
        perm: response.permissions.map((p) => ({
          permType: p.permType,
          key: asBuffer(p.key),
          range_end: asBuffer(p.rangeEnd),
        })),
      };
    },
    'Auth/RoleList': async (_request, _signal, credentials) => {
      const response = await auth.roleList(callerOf(backend, credentials));
      return { header: headerToWire(response.header), roles: response.roles };
    },
    'Auth/RoleDelete': async (request, _signal, credentials) =>
      reply(await auth.roleDelete(callerOf(backend, credentials), strOrEmpty(request, 'role'))),
    'Auth/RoleGrantPermission': async (request, _signal, credentials) =>
      reply(
        await auth.roleGrantPermission(
          callerOf(backend, credentials),
          strOrEmpty(request, 'name'),
          permissionFromWire(request),
        ),
      ),
    'Auth/RoleRevokePermission': async (request, _signal, credentials) =>
      reply(
        await auth.roleRevokePermission(
          callerOf(backend, credentials),
          strOrEmpty(request, 'role'),
          bytes(request, 'key'),
          bytes(request, 'range_end'),
        ),
      ),
  };
}

function strOrEmpty(request: WireObject, field: string): string {
  const value = request[field];
  return typeof value === 'string' ? value : '';
}

/** What an etcd with auth disabled and no users or roles answers. */
function disabledAuthHandlers(header: () => WireHeader): Record<string, UnaryHandler> {
  const unsupported = async (): Promise<object> => {
    throw new ApiRequestError(12, 'concord: this backend has no auth store');
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

/** A shard as concordpb.ShardInfo. */
function shardInfoToWire(shard: ShardView) {
  return {
    ID: uint64ToWire(BigInt(shard.id)),
    start: shard.start,
    end: shard.end,
    epoch: uint64ToWire(BigInt(shard.epoch)),
    confEpoch: uint64ToWire(BigInt(shard.confEpoch)),
    leader: uint64ToWire(shard.leader),
    replicas: shard.replicas.map((r) => ({ ID: uint64ToWire(r.id), isLearner: r.isLearner })),
    sizeBytes: int64ToWire(BigInt(shard.sizeBytes)),
    qps: shard.qps,
  };
}

/** Concord's own admin calls (proto/concordpb/admin.proto). */
function concordHandlers({ backend }: HandlerContext): Record<string, UnaryHandler> {
  return {
    'Shard/Split': async (request) => {
      if (backend.shardSplit === undefined)
        throw new ApiRequestError(12, 'concord: this backend has no shard map');
      const key = asBuffer(request.key as Uint8Array | undefined);
      if (key.length === 0) throw new ApiRequestError(3, 'concord: shard split needs a key');
      const split = await backend.shardSplit(key);
      return {
        header: headerToWire(split.header),
        left: shardInfoToWire(split.left),
        right: shardInfoToWire(split.right),
      };
    },
    'Shard/Revisions': async (request) => {
      if (backend.shardRevisions === undefined)
        throw new ApiRequestError(12, 'concord: this backend has no timestamp oracle');
      const count = wireToNumber(request.count as string | number | undefined);
      if (!Number.isSafeInteger(count) || count < 1)
        throw new ApiRequestError(3, 'concord: count must be positive');
      const range = await backend.shardRevisions(count);
      return { first: uint64ToWire(BigInt(range.first)), count: uint64ToWire(BigInt(range.count)) };
    },
    'Shard/List': async () => {
      if (backend.shardList === undefined)
        throw new ApiRequestError(12, 'concord: this backend has no shard map');
      const map = backend.shardList();
      return {
        header: headerToWire(map.header),
        shards: map.shards.map(shardInfoToWire),
        metaLeader: uint64ToWire(map.metaLeader),
        metaApplied: uint64ToWire(BigInt(map.metaApplied)),
        linearizable: map.linearizable,
      };
    },
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
    ...concordHandlers(context),
  };
}

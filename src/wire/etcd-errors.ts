// etcd's client-visible errors: gRPC status code + exact message text. The server throws them;
// the API layer sends them as they are. Clients (etcdctl, clientv3, the etcd3 npm package) match
// on these strings, so the text is reproduced verbatim (facts from etcd's api/v3rpc/rpctypes).

import { status as GrpcStatus } from '@grpc/grpc-js';

const S = GrpcStatus;

export const etcdErrors = {
  emptyKey: [S.INVALID_ARGUMENT, 'etcdserver: key is not provided'],
  keyNotFound: [S.INVALID_ARGUMENT, 'etcdserver: key not found'],
  valueProvided: [S.INVALID_ARGUMENT, 'etcdserver: value is provided'],
  leaseProvided: [S.INVALID_ARGUMENT, 'etcdserver: lease is provided'],
  tooManyOps: [S.INVALID_ARGUMENT, 'etcdserver: too many operations in txn request'],
  duplicateKey: [S.INVALID_ARGUMENT, 'etcdserver: duplicate key given in txn request'],
  compacted: [S.OUT_OF_RANGE, 'etcdserver: mvcc: required revision has been compacted'],
  futureRev: [S.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision'],
  noSpace: [S.RESOURCE_EXHAUSTED, 'etcdserver: mvcc: database space exceeded'],
  leaseNotFound: [S.NOT_FOUND, 'etcdserver: requested lease not found'],
  leaseExist: [S.FAILED_PRECONDITION, 'etcdserver: lease already exists'],
  leaseTtlTooLarge: [S.OUT_OF_RANGE, 'etcdserver: too large lease TTL'],
  memberExist: [S.FAILED_PRECONDITION, 'etcdserver: member ID already exist'],
  peerUrlExist: [S.FAILED_PRECONDITION, 'etcdserver: Peer URLs already exists'],
  memberNotEnoughStarted: [
    S.FAILED_PRECONDITION,
    'etcdserver: re-configuration failed due to not enough started members',
  ],
  memberBadUrls: [S.INVALID_ARGUMENT, 'etcdserver: given member URLs are invalid'],
  memberNotFound: [S.NOT_FOUND, 'etcdserver: member not found'],
  memberNotLearner: [S.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member'],
  learnerNotReady: [
    S.FAILED_PRECONDITION,
    'etcdserver: can only promote a learner member which is in sync with leader',
  ],
  tooManyLearners: [S.FAILED_PRECONDITION, 'etcdserver: too many learner members in cluster'],
  idRemoved: [S.FAILED_PRECONDITION, 'etcdserver: ID removed'],
  requestTooLarge: [S.INVALID_ARGUMENT, 'etcdserver: request is too large'],
  tooManyRequests: [S.RESOURCE_EXHAUSTED, 'etcdserver: too many requests'],
  rootUserNotExist: [S.FAILED_PRECONDITION, 'etcdserver: root user does not exist'],
  userNotFound: [S.FAILED_PRECONDITION, 'etcdserver: user name not found'],
  roleNotFound: [S.FAILED_PRECONDITION, 'etcdserver: role name not found'],
  authNotEnabled: [S.FAILED_PRECONDITION, 'etcdserver: authentication is not enabled'],
  permissionDenied: [S.PERMISSION_DENIED, 'etcdserver: permission denied'],
  invalidAuthToken: [S.UNAUTHENTICATED, 'etcdserver: invalid auth token'],
  rootRoleNotExist: [S.FAILED_PRECONDITION, 'etcdserver: root user does not have root role'],
  userEmpty: [S.INVALID_ARGUMENT, 'etcdserver: user name is empty'],
  userAlreadyExist: [S.FAILED_PRECONDITION, 'etcdserver: user name already exists'],
  roleEmpty: [S.INVALID_ARGUMENT, 'etcdserver: role name is empty'],
  roleAlreadyExist: [S.FAILED_PRECONDITION, 'etcdserver: role name already exists'],
  roleNotGranted: [S.FAILED_PRECONDITION, 'etcdserver: role is not granted to the user'],
  permissionNotGranted: [S.FAILED_PRECONDITION, 'etcdserver: permission is not granted to the role'],
  authFailed: [S.INVALID_ARGUMENT, 'etcdserver: authentication failed, invalid user ID or password'],
  authOldRevision: [S.INVALID_ARGUMENT, 'etcdserver: revision of auth store is old'],
  invalidAuthMgmt: [S.INVALID_ARGUMENT, 'etcdserver: invalid auth management'],
  // etcd's maintenance service and the no-password check return the auth package's own errors,
  // which reach the client untranslated (gRPC Unknown, "auth: " texts).
  authNoPasswordUser: [S.UNKNOWN, 'auth: authentication failed, password was given for no password user'],
  maintenanceUserEmpty: [S.UNKNOWN, 'auth: user name is empty'],
  maintenancePermissionDenied: [S.UNKNOWN, 'auth: permission denied'],
  maintenanceInvalidAuthToken: [S.UNKNOWN, 'auth: invalid auth token'],
  noLeader: [S.UNAVAILABLE, 'etcdserver: no leader'],
  notLeader: [S.FAILED_PRECONDITION, 'etcdserver: not leader'],
  leaderChanged: [S.UNAVAILABLE, 'etcdserver: leader changed'],
  notCapable: [S.UNAVAILABLE, 'etcdserver: not capable'],
  stopped: [S.UNAVAILABLE, 'etcdserver: server stopped'],
  timeout: [S.UNAVAILABLE, 'etcdserver: request timed out'],
  timeoutDueToLeaderFail: [
    S.UNAVAILABLE,
    'etcdserver: request timed out, possibly due to previous leader failure',
  ],
  timeoutDueToConnectionLost: [
    S.UNAVAILABLE,
    'etcdserver: request timed out, possibly due to connection lost',
  ],
  unhealthy: [S.UNAVAILABLE, 'etcdserver: unhealthy cluster'],
  corrupt: [S.DATA_LOSS, 'etcdserver: corrupt cluster'],
  notSupportedForLearner: [S.UNAVAILABLE, 'etcdserver: rpc not supported for learner'],
  badLeaderTransferee: [S.FAILED_PRECONDITION, 'etcdserver: bad leader transferee'],
  // v3election / concurrency errors travel as plain errors (gRPC Unknown) in etcd.
  electionNoLeader: [S.UNKNOWN, 'election: no leader'],
  electionNotLeader: [S.UNKNOWN, 'election: not leader'],
  electionMissingLeaderKey: [S.UNKNOWN, '"leader" field must be provided'],
  lockMissingName: [S.UNKNOWN, '"name" field must be provided'],
  lockMissingKey: [S.UNKNOWN, '"key" field must be provided'],
} as const satisfies Record<string, readonly [GrpcStatus, string]>;

export type EtcdErrorCode = keyof typeof etcdErrors;

/** An error with etcd's wire identity. Backends throw these; the API layer sends them as-is. */
export class EtcdError extends Error {
  readonly grpcCode: GrpcStatus;
  constructor(readonly code: EtcdErrorCode) {
    super(etcdErrors[code][1]);
    this.name = 'EtcdError';
    this.grpcCode = etcdErrors[code][0];
  }
}

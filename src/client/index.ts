// The public surface of the Concord client (package main entry).

export type { BalancerOptions, BalancerPolicyName, HealthOptions } from './balancer.js';
export { balancerPolicyNames, EndpointPool, EndpointState } from './balancer.js';
export type {
  AuthOptions,
  CallOptions,
  ClientOptions,
  EndpointStatus,
  LeaseTimeToLive,
  Member,
  RetryOptions,
} from './client.js';
export { Client, TxnBuilder } from './client.js';
export { FakeClock, seededRandom } from './clock.js';
export type { TlsOptions } from './connection.js';
export * from './errors.js';
export { HashRing } from './hash-ring.js';
export type { KeepAliveOptions } from './lease.js';
export { LeaseKeepAlive } from './lease.js';
export type {
  Compare,
  CompareOperator,
  DeleteOptions,
  DeleteResult,
  GetOptions,
  GetResult,
  Operation,
  OperationResult,
  PutOptions,
  PutResult,
  SortOrder,
  SortTarget,
  TxnResult,
} from './ops.js';
export { compare, op } from './ops.js';
export { Barrier, DoubleBarrier } from './recipes/barrier.js';
export { type RecipeOptions, Session, type WaitOptions, whenAborted } from './recipes/common.js';
export { type ConfigSnapshot, ConfigWatch, type ConfigWatchOptions } from './recipes/config-watch.js';
export { Counter } from './recipes/counter.js';
export { Election, type LeaderInfo } from './recipes/election.js';
export { guardedPut } from './recipes/fencing.js';
export { LockNotHeldError, Mutex } from './recipes/mutex.js';
export { PriorityQueue, Queue } from './recipes/queue.js';
export { ReadWriteLock } from './recipes/rwlock.js';
export { Semaphore } from './recipes/semaphore.js';
export { type Registration, type ServiceInstance, ServiceRegistry } from './recipes/service-registry.js';
export type { Bytes, KeyValue, ResponseHeader } from './types.js';
export { prefixEnd } from './types.js';
export type { WatchBatch, WatchEvent, WatchOptions } from './watch.js';
export { Watcher } from './watch.js';

// The etcd v3 API layer: gRPC services and the JSON gateway over an EtcdBackend, on one port.

export type * from '../services/backend.js';
export { watchFromHub } from '../services/hub-watch.js';
export { type ApiServer, type ApiServerOptions, startApiServer } from './api-server.js';
export { ApiRequestError, EtcdError, type EtcdErrorCode, etcdErrors, toWireStatus } from './errors.js';
export { createGrpcServer, defaultGrpcServerOptions, type GrpcServerOptions } from './grpc-server.js';
export type { HealthReport, MetricsReport } from './http-gateway.js';
export { defaultValidationLimits, type ValidationLimits } from './validate.js';
export { defaultWatchSessionOptions, type WatchSessionOptions } from './watch-session.js';

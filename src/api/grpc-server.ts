// Builds the gRPC server (h2-grpc.ts, on node:http2) for every etcd v3 service on top of an
// EtcdBackend. grpc-js is imported for its status enum only.

import * as grpc from '@grpc/grpc-js';
import { LeaseNotFoundError } from '../mvcc/errors.js';
import type { Disposable, EtcdBackend } from '../services/backend.js';
import { declaredServices, type EtcdServiceName, serviceDefinition } from '../wire/etcd-proto.js';
import { gogoDecodeError, withoutUnknownFields } from '../wire/proto-check.js';
import { headerToWire, int64ToWire, kvToWire, wireToBigInt } from './convert.js';
import { credentialsOf } from './credentials.js';
import { ApiRequestError, EtcdError, toWireStatus } from './errors.js';
import { withFastCodecs } from './grpc-codecs.js';
import {
  concurrentStreamsMaxDefault,
  H2GrpcServer,
  type H2Method,
  type H2Status,
  type H2StreamingHandler,
  type H2UnaryHandler,
  RequestDecodeError,
} from './h2-grpc.js';
import { snapshotMessages } from './streams.js';
import {
  checkMaintenanceAdmin,
  type HandlerContext,
  SIGNAL_METHODS,
  unaryHandlers,
} from './unary-handlers.js';
import { defaultValidationLimits, type ValidationLimits } from './validate.js';
import {
  defaultWatchSessionOptions,
  WatchSession,
  type WatchSessionOptions,
  watchPermission,
} from './watch-session.js';
import type { WireWatchRequest, WireWatchResponse } from './wire.js';

export interface GrpcServerOptions {
  limits: ValidationLimits;
  watch: WatchSessionOptions;
  /** Responses a slow watch or observe stream may have queued before we end it (flow control pauses
   * hub watchers long before this; it catches what is pushed regardless). */
  watchResponsesQueuedMax: number;
  /** Keep-alive requests of one stream waiting for the backend. */
  keepAlivesInflightMax: number;
  /**
   * HTTP/2 streams (gRPC calls, unary ones too) one connection may have open at once
   * (etcd's --max-concurrent-streams).
   */
  concurrentStreamsMax: number;
}

export const defaultGrpcServerOptions: GrpcServerOptions = {
  limits: defaultValidationLimits,
  watch: defaultWatchSessionOptions,
  watchResponsesQueuedMax: 10_000,
  keepAlivesInflightMax: 1_000,
  concurrentStreamsMax: concurrentStreamsMaxDefault,
};

export const observeFellBehindMessage = 'concord: observe stream fell too far behind; observe again';
export const watchFellBehindMessage =
  'concord: watch stream fell too far behind; resume from the last revision';

/** etcd lets gRPC accept this much beyond --max-request-bytes, then refuses with its own error. */
export const grpcOverheadBytes = 512 * 1024;

type WireObject = Record<string, unknown>;

function wireStatus(error: unknown): H2Status {
  return toWireStatus(error);
}

function watchHandler(backend: EtcdBackend, options: GrpcServerOptions): H2StreamingHandler {
  return (call) => {
    // call.write() answers false once the HTTP/2 stream's buffer is full (the client reads slower
    // than we write; flow control holds the rest): the session then stops taking events until
    // onDrain. The queued-responses bound only catches what flow control cannot (a backend that
    // pushes regardless).
    const send = (response: WireWatchResponse): boolean => {
      if (call.queuedMessages >= options.watchResponsesQueuedMax) {
        session.close();
        call.fail(new ApiRequestError(grpc.status.RESOURCE_EXHAUSTED, watchFellBehindMessage));
        return false;
      }
      return call.write(response);
    };
    const permitted = watchPermission(
      backend,
      credentialsOf(call.headers, call.session, () => call.socket),
    );
    const session = new WatchSession(
      backend,
      send,
      options.watch,
      (error) => {
        session.close();
        call.fail(error);
      },
      permitted,
    );
    call.onDrain = () => session.drained();
    call.onMessage = (request) => session.handle(request as WireWatchRequest);
    call.onHalfClose = () => {
      session.close();
      call.end();
    };
    call.onCancel = () => session.close();
  };
}

function keepAliveHandler(backend: EtcdBackend, options: GrpcServerOptions): H2StreamingHandler {
  return (call) => {
    let inflight = 0;
    let chain: Promise<void> = Promise.resolve();
    const fail = (error: unknown) => call.fail(error);
    call.onMessage = (message) => {
      if (inflight >= options.keepAlivesInflightMax) return fail(new EtcdError('tooManyRequests'));
      inflight++;
      const id = wireToBigInt((message as { ID: string }).ID);
      // Answers go out in request order, as etcd's single-goroutine loop does.
      chain = chain.then(async () => {
        try {
          const response = await keepAliveOnce(backend, id);
          call.write(response);
        } catch (error) {
          fail(error);
        } finally {
          inflight--;
        }
      });
    };
    call.onHalfClose = () => {
      chain.then(() => call.end());
    };
  };
}

/** One keep-alive answer, as etcd's LeaseKeepAlive stream (and the gateway's) sends it. */
export async function keepAliveOnce(backend: EtcdBackend, id: bigint): Promise<object> {
  try {
    const response = await backend.leaseKeepAlive(id);
    return { header: headerToWire(response.header), ID: int64ToWire(response.id), TTL: response.ttlSeconds };
  } catch (error) {
    // etcd answers a keep-alive for an unknown lease with TTL 0 instead of failing the stream.
    const notFound =
      error instanceof LeaseNotFoundError || (error instanceof EtcdError && error.code === 'leaseNotFound');
    if (!notFound) throw error;
    return { header: headerToWire(backend.header()), ID: int64ToWire(id), TTL: 0 };
  }
}

function snapshotHandler(backend: EtcdBackend): H2StreamingHandler {
  return async (call) => {
    try {
      checkMaintenanceAdmin(
        backend,
        credentialsOf(call.headers, call.session, () => call.socket),
      );
      for await (const message of snapshotMessages(backend)) {
        if (call.done) return;
        if (!call.write(message)) await call.whenWritable();
      }
      call.end();
    } catch (error) {
      call.fail(error);
    }
  };
}

function observeHandler(backend: EtcdBackend, options: GrpcServerOptions): H2StreamingHandler {
  return (call) => {
    let subscription: Disposable | undefined;
    let closed = false;
    const close = () => {
      closed = true;
      subscription?.dispose();
    };
    call.onCancel = close;
    const fail = (error: unknown) => {
      close();
      call.fail(error);
    };
    try {
      subscription = backend.observe(bytesField(call.request as WireObject, 'name'), (kv, header) => {
        if (closed) return;
        // Proclamations are pushed; a client that stops reading must not grow our queue forever.
        if (call.queuedMessages >= options.watchResponsesQueuedMax) {
          return fail(new ApiRequestError(grpc.status.RESOURCE_EXHAUSTED, observeFellBehindMessage));
        }
        call.write({ header: headerToWire(header), kv: kvToWire(kv) });
      });
      if (closed) subscription.dispose();
    } catch (error) {
      fail(error);
    }
  };
}

function bytesField(request: WireObject, field: string): Buffer {
  const value = request[field];
  return Buffer.isBuffer(value) ? value : Buffer.alloc(0);
}

/**
 * Runs etcd's decoder rules (wire/proto-check.ts) before our decoder: bytes etcd cannot decode
 * are refused with its text, also where our decoders would have read them leniently.
 */
function withEtcdDecodeErrors(method: H2Method, requestType: string): H2Method {
  const decode = method.requestDeserialize;
  return {
    ...method,
    requestDeserialize: (bytes) => {
      const refusal = gogoDecodeError(requestType, bytes);
      if (refusal !== undefined) throw new RequestDecodeError(refusal);
      try {
        return decode(bytes);
      } catch (error) {
        // etcd decodes it (checked above), so only an unknown field can trip ours: drop them.
        const known = withoutUnknownFields(requestType, bytes);
        if (known.length === bytes.length) throw error;
        return decode(known);
      }
    },
  };
}

export function createGrpcServer(
  backend: EtcdBackend,
  options: GrpcServerOptions = defaultGrpcServerOptions,
): H2GrpcServer {
  const server = new H2GrpcServer({
    receiveMessageBytesMax: options.limits.requestBytesMax + grpcOverheadBytes,
    toStatus: wireStatus,
    concurrentStreamsMax: options.concurrentStreamsMax,
  });
  const context: HandlerContext = { backend, limits: options.limits };
  const handlers = unaryHandlers(context);
  const streaming: Record<string, H2StreamingHandler> = {
    'Watch/Watch': watchHandler(backend, options),
    'Lease/LeaseKeepAlive': keepAliveHandler(backend, options),
    'Maintenance/Snapshot': snapshotHandler(backend),
    'Election/Observe': observeHandler(backend, options),
  };
  const services: EtcdServiceName[] = [
    'etcdserverpb.KV',
    'etcdserverpb.Watch',
    'etcdserverpb.Lease',
    'etcdserverpb.Cluster',
    'etcdserverpb.Maintenance',
    'etcdserverpb.Auth',
    'v3lockpb.Lock',
    'v3electionpb.Election',
    'concordpb.Shard',
  ];
  for (const service of services) {
    const shortName = service.slice(service.indexOf('.') + 1);
    const definition = withFastCodecs(service, serviceDefinition(service));
    const declared = declaredServices().get(service) ?? [];
    for (const [method, methodDefinition] of Object.entries(definition)) {
      const key = `${shortName}/${method}`;
      const requestType = declared.find((m) => m.name === method)?.requestType;
      if (requestType === undefined) throw new Error(`${service}/${method} is not declared`);
      const route = withEtcdDecodeErrors(methodDefinition as unknown as H2Method, requestType);
      const stream = streaming[key];
      const unary = handlers[key];
      if (stream !== undefined) server.addStreaming(route, stream);
      else if (unary !== undefined) {
        const withCredentials: H2UnaryHandler = (request, signal, call) =>
          unary(
            request as WireObject,
            signal,
            credentialsOf(call.headers, call.stream.session, () => call.stream.session?.socket),
          );
        server.addUnary(route, withCredentials, { wantsSignal: SIGNAL_METHODS.has(key) });
      } else throw new Error(`no handler for ${key}`);
    }
  }
  return server;
}

// Builds the @grpc/grpc-js Server for every etcd v3 service on top of an EtcdBackend.

import * as grpc from '@grpc/grpc-js';
import { LeaseNotFoundError } from '../mvcc/errors.js';
import type { Disposable, EtcdBackend } from '../server/backend.js';
import { type EtcdServiceName, serviceDefinition } from '../wire/etcd-proto.js';
import { headerToWire, int64ToWire, kvToWire, wireToBigInt } from './convert.js';
import { ApiRequestError, EtcdError, toWireStatus } from './errors.js';
import { withFastCodecs } from './grpc-codecs.js';
import { snapshotMessages, writableOrGone } from './streams.js';
import { type HandlerContext, type UnaryHandler, unaryHandlers } from './unary-handlers.js';
import { defaultValidationLimits, type ValidationLimits } from './validate.js';
import { defaultWatchSessionOptions, WatchSession, type WatchSessionOptions } from './watch-session.js';
import type { WireWatchRequest, WireWatchResponse } from './wire.js';

export interface GrpcServerOptions {
  limits: ValidationLimits;
  watch: WatchSessionOptions;
  /** Responses a slow watch or observe stream may have queued before we end it (flow control pauses
   * hub watchers long before this; it catches what is pushed regardless). */
  watchResponsesQueuedMax: number;
  /** Keep-alive requests of one stream waiting for the backend. */
  keepAlivesInflightMax: number;
}

export const defaultGrpcServerOptions: GrpcServerOptions = {
  limits: defaultValidationLimits,
  watch: defaultWatchSessionOptions,
  watchResponsesQueuedMax: 10_000,
  keepAlivesInflightMax: 1_000,
};

export const observeFellBehindMessage = 'concord: observe stream fell too far behind; observe again';
export const watchFellBehindMessage =
  'concord: watch stream fell too far behind; resume from the last revision';

/** etcd lets gRPC accept this much beyond --max-request-bytes, then refuses with its own error. */
export const grpcOverheadBytes = 512 * 1024;

type WireObject = Record<string, unknown>;

function statusError(error: unknown): Partial<grpc.StatusObject> {
  const { code, details } = toWireStatus(error);
  return { code, details, metadata: new grpc.Metadata() };
}

/**
 * Ends a streaming call with an error status. grpc-js turns an 'error' event into the status
 * and sends it after the responses already queued (destroy() would drop the call without any
 * status: the client would wait forever and the HTTP/2 stream would stay open).
 */
function failStream(call: Pick<NodeJS.EventEmitter, 'emit'>, error: unknown): void {
  const { code, details } = toWireStatus(error);
  call.emit('error', Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() }));
}

/** Handed to handlers that do not declare the signal parameter: they never look at it. */
const neverAborted = new AbortController().signal;

function wrapUnary(handler: UnaryHandler): grpc.handleUnaryCall<WireObject, object> {
  const fail = (callback: grpc.sendUnaryData<object>, error: unknown) => callback(statusError(error));
  // Only the handlers that can block (Lock, Campaign) declare the signal; the rest skip the
  // per-call AbortController and 'cancelled' listener.
  if (handler.length < 2) {
    return (call, callback) => {
      handler(call.request, neverAborted).then(
        (response) => callback(null, response),
        (error: unknown) => fail(callback, error),
      );
    };
  }
  return (call, callback) => {
    const abort = new AbortController();
    call.on('cancelled', () => abort.abort());
    handler(call.request, abort.signal).then(
      (response) => callback(null, response),
      (error: unknown) => fail(callback, error),
    );
  };
}

function implementation(
  service: EtcdServiceName,
  handlers: Record<string, UnaryHandler>,
  streaming: Record<string, grpc.UntypedHandleCall>,
): grpc.UntypedServiceImplementation {
  const shortName = service.slice(service.indexOf('.') + 1);
  const result: grpc.UntypedServiceImplementation = {};
  for (const method of Object.keys(serviceDefinition(service))) {
    const key = `${shortName}/${method}`;
    const unary = handlers[key];
    const stream = streaming[key];
    if (stream !== undefined) result[method] = stream;
    else if (unary !== undefined) result[method] = wrapUnary(unary);
    else throw new Error(`no handler for ${key}`);
  }
  return result;
}

function watchHandler(backend: EtcdBackend, options: GrpcServerOptions): grpc.UntypedHandleCall {
  const handler: grpc.handleBidiStreamingCall<WireWatchRequest, WireWatchResponse> = (call) => {
    // call.write() answers false once the stream's buffer is full (the client reads slower than
    // we write; HTTP/2 flow control holds the rest): the session then stops taking events until
    // 'drain'. The queued-responses bound only catches what flow control cannot (a backend that
    // pushes regardless).
    const send = (response: WireWatchResponse): boolean => {
      if (call.writableLength >= options.watchResponsesQueuedMax) {
        session.close();
        failStream(call, new ApiRequestError(grpc.status.RESOURCE_EXHAUSTED, watchFellBehindMessage));
        return false;
      }
      return call.write(response);
    };
    const session = new WatchSession(backend, send, options.watch, (error) => failStream(call, error));
    call.on('drain', () => session.drained());
    call.on('data', (request: WireWatchRequest) => session.handle(request));
    call.on('end', () => {
      session.close();
      call.end();
    });
    call.on('cancelled', () => session.close());
    call.on('error', () => session.close());
  };
  return handler as grpc.UntypedHandleCall;
}

function keepAliveHandler(backend: EtcdBackend, options: GrpcServerOptions): grpc.UntypedHandleCall {
  const handler: grpc.handleBidiStreamingCall<{ ID: string }, object> = (call) => {
    let inflight = 0;
    let chain: Promise<void> = Promise.resolve();
    let failed = false;
    const fail = (error: unknown) => {
      if (failed) return;
      failed = true;
      failStream(call, error);
    };
    call.on('data', (request: { ID: string }) => {
      if (inflight >= options.keepAlivesInflightMax) return fail(new EtcdError('tooManyRequests'));
      inflight++;
      const id = wireToBigInt(request.ID);
      // Answers go out in request order, as etcd's single-goroutine loop does.
      chain = chain.then(async () => {
        try {
          const response = await keepAliveOnce(backend, id);
          if (!failed) call.write(response);
        } catch (error) {
          fail(error);
        } finally {
          inflight--;
        }
      });
    });
    call.on('end', () => {
      chain.then(() => {
        if (!failed) call.end();
      });
    });
  };
  return handler as grpc.UntypedHandleCall;
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

function snapshotHandler(backend: EtcdBackend): grpc.UntypedHandleCall {
  const handler: grpc.handleServerStreamingCall<WireObject, object> = async (call) => {
    try {
      for await (const message of snapshotMessages(backend)) {
        if (call.cancelled || call.destroyed) return;
        if (!call.write(message)) await writableOrGone(call);
      }
      if (!call.cancelled) call.end();
    } catch (error) {
      failStream(call, error);
    }
  };
  return handler as grpc.UntypedHandleCall;
}

function observeHandler(backend: EtcdBackend, options: GrpcServerOptions): grpc.UntypedHandleCall {
  const handler: grpc.handleServerStreamingCall<WireObject, object> = (call) => {
    let subscription: Disposable | undefined;
    let closed = false;
    const close = () => {
      closed = true;
      subscription?.dispose();
    };
    call.on('cancelled', close);
    call.on('error', close);
    try {
      subscription = backend.observe(bytesField(call.request, 'name'), (kv, header) => {
        if (closed) return;
        // Proclamations are pushed; a client that stops reading must not grow our queue forever.
        if (call.writableLength >= options.watchResponsesQueuedMax) {
          close();
          return failStream(
            call,
            new ApiRequestError(grpc.status.RESOURCE_EXHAUSTED, observeFellBehindMessage),
          );
        }
        call.write({ header: headerToWire(header), kv: kvToWire(kv) });
      });
      if (closed) subscription.dispose();
    } catch (error) {
      close();
      failStream(call, error);
    }
  };
  return handler as grpc.UntypedHandleCall;
}

function bytesField(request: WireObject, field: string): Buffer {
  const value = request[field];
  return Buffer.isBuffer(value) ? value : Buffer.alloc(0);
}

export function createGrpcServer(
  backend: EtcdBackend,
  options: GrpcServerOptions = defaultGrpcServerOptions,
): grpc.Server {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': options.limits.requestBytesMax + grpcOverheadBytes,
    'grpc.max_send_message_length': 2 ** 31 - 1,
  });
  const context: HandlerContext = { backend, limits: options.limits };
  const handlers = unaryHandlers(context);
  const streaming: Record<string, grpc.UntypedHandleCall> = {
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
  ];
  for (const service of services) {
    const definition = withFastCodecs(service, serviceDefinition(service));
    server.addService(definition, implementation(service, handlers, streaming));
  }
  return server;
}

// etcd's HTTP/1.1 JSON gateway (the grpc-gateway paths under /v3/... and /v3beta/...), plus
// /health, /version and /metrics. Requests go through the same handlers as gRPC
// (unary-handlers.ts, watch-session.ts), so validation, errors and results are identical; only the
// encoding differs: requests are read as etcd's gateway reads them (go-json.ts), answers are
// rendered by json-codec.ts and framed as etcd frames them (gateway-response.ts).
//
// Streams follow etcd's gateway: a request body carries any number of JSON messages; lease
// keep-alive ends its answer once the body has ended and every message was answered; watch keeps
// streaming after the body ended, until the client goes. Unlike etcd, whose Go HTTP server holds
// a streaming answer until the whole request body has arrived, each message is answered as soon
// as it is read.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import type { Credentials, Disposable, EtcdBackend } from '../services/backend.js';
import { type EtcdServiceName, serviceDefinition } from '../wire/etcd-proto.js';
import { headerToWire, kvToWire, wireToBigInt } from './convert.js';
import { credentialsOf } from './credentials.js';
import { ApiRequestError, EtcdError, toWireStatus, type WireStatus } from './errors.js';
import {
  GatewayStreamWriter,
  sendGatewayError,
  sendGoBody,
  sendGoText,
  sendServerError,
  sendUnaryResult,
  writeGoHead,
} from './gateway-response.js';
import { decodeJsonpb, GoJsonError, goJsonStringify, type JsonNode, readNextJson } from './go-json.js';
import { keepAliveOnce } from './grpc-server.js';
import { messageToJson } from './json-codec.js';
import { snapshotMessages, writableOrGone } from './streams.js';
import {
  checkMaintenanceAdmin,
  type HandlerContext,
  type UnaryHandler,
  unaryHandlers,
} from './unary-handlers.js';
import type { ValidationLimits } from './validate.js';
import { WatchSession, type WatchSessionOptions, watchPermission } from './watch-session.js';
import type { WireWatchRequest } from './wire.js';

export interface HealthReport {
  healthy: boolean;
  /** Why not healthy (e.g. "NOSPACE alarm", "no leader"); empty when healthy. */
  reason: string;
}

export interface MetricsReport {
  contentType: string;
  body: string;
}

export interface GatewayOptions {
  limits: ValidationLimits;
  watch: WatchSessionOptions;
  /** Reported by /version as etcdserver / etcdcluster. */
  serverVersion: string;
  clusterVersion: string;
  health?: () => Promise<HealthReport>;
  metrics?: () => Promise<MetricsReport>;
  /** Routes the server adds (test-only fault hooks); answers true when it handled the request. */
  extraRoutes?: (request: IncomingMessage, response: ServerResponse, path: string) => Promise<boolean>;
}

interface Route {
  service: string;
  method: string;
  /** Fully qualified protobuf names of the request and response messages. */
  requestType: string;
  responseType: string;
}

const routeTable: Array<[string, string, string]> = [
  ['/v3/kv/range', 'etcdserverpb.KV', 'Range'],
  ['/v3/kv/put', 'etcdserverpb.KV', 'Put'],
  ['/v3/kv/deleterange', 'etcdserverpb.KV', 'DeleteRange'],
  ['/v3/kv/txn', 'etcdserverpb.KV', 'Txn'],
  ['/v3/kv/compaction', 'etcdserverpb.KV', 'Compact'],
  ['/v3/lease/grant', 'etcdserverpb.Lease', 'LeaseGrant'],
  ['/v3/lease/revoke', 'etcdserverpb.Lease', 'LeaseRevoke'],
  ['/v3/kv/lease/revoke', 'etcdserverpb.Lease', 'LeaseRevoke'],
  ['/v3/lease/timetolive', 'etcdserverpb.Lease', 'LeaseTimeToLive'],
  ['/v3/kv/lease/timetolive', 'etcdserverpb.Lease', 'LeaseTimeToLive'],
  ['/v3/lease/leases', 'etcdserverpb.Lease', 'LeaseLeases'],
  ['/v3/kv/lease/leases', 'etcdserverpb.Lease', 'LeaseLeases'],
  ['/v3/cluster/member/list', 'etcdserverpb.Cluster', 'MemberList'],
  ['/v3/cluster/member/add', 'etcdserverpb.Cluster', 'MemberAdd'],
  ['/v3/cluster/member/remove', 'etcdserverpb.Cluster', 'MemberRemove'],
  ['/v3/cluster/member/update', 'etcdserverpb.Cluster', 'MemberUpdate'],
  ['/v3/cluster/member/promote', 'etcdserverpb.Cluster', 'MemberPromote'],
  ['/v3/maintenance/status', 'etcdserverpb.Maintenance', 'Status'],
  ['/v3/maintenance/alarm', 'etcdserverpb.Maintenance', 'Alarm'],
  ['/v3/maintenance/defragment', 'etcdserverpb.Maintenance', 'Defragment'],
  ['/v3/maintenance/hash', 'etcdserverpb.Maintenance', 'Hash'],
  ['/v3/maintenance/hashkv', 'etcdserverpb.Maintenance', 'HashKV'],
  ['/v3/maintenance/transfer-leadership', 'etcdserverpb.Maintenance', 'MoveLeader'],
  ['/v3/concord/shard/list', 'concordpb.Shard', 'List'],
  ['/v3/concord/shard/split', 'concordpb.Shard', 'Split'],
  ['/v3/auth/enable', 'etcdserverpb.Auth', 'AuthEnable'],
  ['/v3/auth/disable', 'etcdserverpb.Auth', 'AuthDisable'],
  ['/v3/auth/authenticate', 'etcdserverpb.Auth', 'Authenticate'],
  ['/v3/auth/user/add', 'etcdserverpb.Auth', 'UserAdd'],
  ['/v3/auth/user/get', 'etcdserverpb.Auth', 'UserGet'],
  ['/v3/auth/user/list', 'etcdserverpb.Auth', 'UserList'],
  ['/v3/auth/user/delete', 'etcdserverpb.Auth', 'UserDelete'],
  ['/v3/auth/user/changepw', 'etcdserverpb.Auth', 'UserChangePassword'],
  ['/v3/auth/user/grant', 'etcdserverpb.Auth', 'UserGrantRole'],
  ['/v3/auth/user/revoke', 'etcdserverpb.Auth', 'UserRevokeRole'],
  ['/v3/auth/role/add', 'etcdserverpb.Auth', 'RoleAdd'],
  ['/v3/auth/role/get', 'etcdserverpb.Auth', 'RoleGet'],
  ['/v3/auth/role/list', 'etcdserverpb.Auth', 'RoleList'],
  ['/v3/auth/role/delete', 'etcdserverpb.Auth', 'RoleDelete'],
  ['/v3/auth/role/grant', 'etcdserverpb.Auth', 'RoleGrantPermission'],
  ['/v3/auth/role/revoke', 'etcdserverpb.Auth', 'RoleRevokePermission'],
  ['/v3/lock/lock', 'v3lockpb.Lock', 'Lock'],
  ['/v3/lock/unlock', 'v3lockpb.Lock', 'Unlock'],
  ['/v3/election/campaign', 'v3electionpb.Election', 'Campaign'],
  ['/v3/election/proclaim', 'v3electionpb.Election', 'Proclaim'],
  ['/v3/election/leader', 'v3electionpb.Election', 'Leader'],
  ['/v3/election/resign', 'v3electionpb.Election', 'Resign'],
];

type MethodDefinition = grpc.MethodDefinition<object, object> & {
  requestType: { type: { name: string } };
  responseType: { type: { name: string } };
};

function buildRoutes(): Map<string, Route & { definition: MethodDefinition }> {
  const routes = new Map<string, Route & { definition: MethodDefinition }>();
  for (const [path, service, method] of routeTable) {
    const definition = serviceDefinition(service as Parameters<typeof serviceDefinition>[0])[
      method
    ] as unknown as MethodDefinition;
    if (definition === undefined) throw new Error(`no method ${service}/${method}`);
    const pkg = service.slice(0, service.indexOf('.'));
    routes.set(path, {
      service,
      method,
      requestType: `${pkg}.${definition.requestType.type.name}`,
      responseType: `${pkg}.${definition.responseType.type.name}`,
      definition,
    });
  }
  return routes;
}

class BodyTooLargeError extends Error {
  readonly code = 'body-too-large';
}

function streamBinding(service: EtcdServiceName, method: string): StreamBinding {
  const definition = serviceDefinition(service)[method] as unknown as MethodDefinition | undefined;
  if (definition === undefined) throw new Error(`no method ${service}/${method}`);
  const pkg = service.slice(0, service.indexOf('.'));
  return {
    definition,
    requestType: `${pkg}.${definition.requestType.type.name}`,
    responseType: `${pkg}.${definition.responseType.type.name}`,
  };
}

interface StreamBinding {
  definition: MethodDefinition;
  requestType: string;
  responseType: string;
}

interface StreamSession {
  handle(wire: Record<string, unknown>): void;
  /** The request body ended after `handle` saw its last message. */
  requestEnded(): void;
  /** The response drained after a write reported it full. */
  drained?(): void;
  close(): void;
}

/** Writes one result line; false when the response buffer is full (wait for drained()). */
type StreamSend = (message: object) => boolean;

/** How a session ends its stream: after its last answer, or with an error. */
interface StreamEnd {
  end(): void;
  fail(error: unknown): void;
}

/**
 * Bytes a streaming response may have waiting for a slow reader before we end it. Watch pauses
 * its watchers long before this (flow control); it bounds what is pushed regardless (observe).
 */
export const streamQueuedBytesMax = 64 * 1024 * 1024;

async function readBody(request: IncomingMessage, bytesMax: number): Promise<Buffer> {
  // A body announced too large is refused before a byte of it is read.
  if (Number(request.headers['content-length']) > bytesMax) throw new BodyTooLargeError();
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of request) {
    total += (chunk as Buffer).length;
    if (total > bytesMax) throw new BodyTooLargeError();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Normalizes a decoded JSON request exactly as a gRPC request would arrive (defaults, enums). */
function normalize(definition: MethodDefinition, message: Record<string, unknown>): Record<string, unknown> {
  return definition.requestDeserialize(definition.requestSerialize(message)) as Record<string, unknown>;
}

/**
 * A unary or server-streaming request body: the first JSON value, as grpc-gateway reads it (an
 * empty body is an empty request; anything after the first value is ignored).
 */
function decodeSingleRequest(body: Buffer, binding: { definition: MethodDefinition; requestType: string }) {
  const next = readNextJson(body, 0);
  const json = next === undefined ? {} : decodeJsonpb(next.node, binding.requestType, body);
  return normalize(binding.definition, json);
}

/** The gateway's own answer to a request that did not decode; `code` differs by call kind. */
function decodeFailure(error: unknown, code: grpcStatus): WireStatus | undefined {
  if (error instanceof GoJsonError) return { code, details: error.message };
  return undefined;
}

/** The gateway paths as etcd 3.4 serves them: /v3/... and the deprecated /v3beta/... alias. */
function gatewayPath(path: string): string | undefined {
  if (path.startsWith('/v3/')) return path;
  if (path.startsWith('/v3beta/')) return `/v3/${path.slice('/v3beta/'.length)}`;
  return undefined;
}

export type GatewayHandler = (request: IncomingMessage, response: ServerResponse) => void;

export function createGatewayHandler(backend: EtcdBackend, options: GatewayOptions): GatewayHandler {
  const context: HandlerContext = { backend, limits: options.limits };
  const handlers = unaryHandlers(context);
  const bodyBytesMax = options.limits.requestBytesMax * 2;
  // Built at the first JSON request: they need the reflected message types, which a member
  // should not load at start-up (see wire/etcd-proto.ts).
  let bindings:
    | {
        routes: ReturnType<typeof buildRoutes>;
        watch: StreamBinding;
        keepAlive: StreamBinding;
        snapshot: StreamBinding;
        observe: StreamBinding;
      }
    | undefined;
  const bound = () => {
    bindings ??= {
      routes: buildRoutes(),
      watch: streamBinding('etcdserverpb.Watch', 'Watch'),
      keepAlive: streamBinding('etcdserverpb.Lease', 'LeaseKeepAlive'),
      snapshot: streamBinding('etcdserverpb.Maintenance', 'Snapshot'),
      observe: streamBinding('v3electionpb.Election', 'Observe'),
    };
    return bindings;
  };

  const serveUnary = async (
    request: IncomingMessage,
    response: ServerResponse,
    route: Route & { definition: MethodDefinition },
  ) => {
    const handler: UnaryHandler | undefined =
      handlers[`${route.service.slice(route.service.indexOf('.') + 1)}/${route.method}`];
    if (handler === undefined) throw new Error(`no handler for ${route.service}/${route.method}`);
    const body = await readBody(request, bodyBytesMax);
    let wire: Record<string, unknown>;
    try {
      wire = decodeSingleRequest(body, route);
    } catch (error) {
      const status = decodeFailure(error, grpcStatus.INVALID_ARGUMENT);
      if (status === undefined) throw error;
      return sendGatewayError(response, status);
    }
    const abort = new AbortController();
    response.on('close', () => abort.abort());
    let result: object;
    try {
      result = await handler(
        wire,
        abort.signal,
        credentialsOf(request.headers, request.socket, () => request.socket),
      );
    } catch (error) {
      return sendServerError(response, toWireStatus(error));
    }
    sendUnaryResult(response, messageToJson(result, route.responseType));
  };

  /**
   * A bidirectional stream: the request body is a sequence of JSON messages, read as
   * grpc-gateway reads it. A first message that does not decode fails the call (HTTP 500, code
   * Unknown, nothing streamed); a later one ends the request side as the body's end would.
   */
  const serveBidiStream = (
    request: IncomingMessage,
    response: ServerResponse,
    stream: StreamBinding,
    open: (send: StreamSend, end: StreamEnd) => StreamSession,
  ) => {
    let messages = 0;
    let requestDone = false;
    const writer = new GatewayStreamWriter(response, () => messages > 0);
    let session: StreamSession | undefined;
    const close = () => {
      requestDone = true;
      session?.close();
    };
    const end: StreamEnd = {
      end: () => {
        close();
        writer.end();
      },
      fail: (error) => {
        close();
        writer.fail(toWireStatus(error));
      },
    };
    const send: StreamSend = (message) => {
      if (writer.gone) return false;
      if (response.writableLength > streamQueuedBytesMax) {
        end.fail(new ApiRequestError(grpcStatus.RESOURCE_EXHAUSTED, 'concord: stream fell too far behind'));
        return false;
      }
      return writer.send(messageToJson(message, stream.responseType));
    };
    session = open(send, end);
    const reader = new RequestStreamReader(options.limits.requestBytesMax);
    const finishRequest = () => {
      if (requestDone) return;
      requestDone = true;
      // The rest of the body, if any, is read and dropped. With no message at all a keep-alive
      // stream ends at once, empty; a watch stream stays open, silent.
      request.off('data', onData);
      session?.requestEnded();
    };
    const onMessage = (node: JsonNode, source: Buffer) => {
      const wire = normalize(stream.definition, decodeJsonpb(node, stream.requestType, source));
      messages++;
      session?.handle(wire);
    };
    const consume = (ended: boolean) => {
      if (requestDone) return;
      try {
        for (const { node, source } of reader.messages(ended)) {
          onMessage(node, source);
          if (requestDone) return;
        }
        if (ended) finishRequest();
      } catch (error) {
        if (messages === 0) {
          close();
          const status = decodeFailure(error, grpcStatus.UNKNOWN);
          if (status !== undefined) return sendGatewayError(response, status);
          return end.fail(error);
        }
        // After the first message grpc-gateway drops a request it cannot decode and stops reading.
        if (error instanceof GoJsonError) return finishRequest();
        end.fail(error);
      }
    };
    // Whatever goes wrong in here ends this one exchange, never the process.
    const guarded = (work: () => void) => {
      try {
        work();
      } catch {
        close();
        response.destroy();
      }
    };
    const onData = (chunk: Buffer) =>
      guarded(() => {
        reader.push(chunk);
        consume(false);
      });
    request.on('data', onData);
    request.on('end', () => guarded(() => consume(true)));
    response.on('drain', () => session?.drained?.());
    response.on('close', close);
  };

  /** A server stream: one JSON request body, then result lines until done (or forever: observe). */
  const serveServerStream = async (
    request: IncomingMessage,
    response: ServerResponse,
    stream: StreamBinding,
    run: (writer: ServerStreamWriter, wire: Record<string, unknown>) => Promise<void>,
  ) => {
    const body = await readBody(request, bodyBytesMax);
    let wire: Record<string, unknown>;
    try {
      wire = decodeSingleRequest(body, stream);
    } catch (error) {
      const status = decodeFailure(error, grpcStatus.INVALID_ARGUMENT);
      if (status === undefined) throw error;
      return sendGatewayError(response, status);
    }
    const writer = new GatewayStreamWriter(response, () => true);
    const serverWriter: ServerStreamWriter = {
      send: (message) => {
        if (response.writableLength > streamQueuedBytesMax) {
          writer.fail(
            toWireStatus(
              new ApiRequestError(grpcStatus.RESOURCE_EXHAUSTED, 'concord: stream fell too far behind'),
            ),
          );
          return false;
        }
        return writer.send(messageToJson(message, stream.responseType));
      },
      end: () => writer.end(),
      gone: () => writer.gone,
      writable: () => writableOrGone(response),
      response,
    };
    try {
      await run(serverWriter, wire);
    } catch (error) {
      writer.fail(toWireStatus(error));
    }
  };

  const runSnapshot = async (writer: ServerStreamWriter) => {
    // Leaving the loop early returns the backend's iterator (it frees its read transaction).
    for await (const message of snapshotMessages(backend)) {
      if (writer.gone()) return;
      if (!writer.send(message)) await writer.writable();
    }
    writer.end();
  };

  const runObserve = (writer: ServerStreamWriter, wire: Record<string, unknown>) =>
    new Promise<void>((resolve) => {
      const name = Buffer.isBuffer(wire.name) ? wire.name : Buffer.alloc(0);
      let subscription: Disposable | undefined;
      let done = false;
      // 'close' also follows our own end() after a failure (e.g. the queued-bytes bound).
      writer.response.once('close', () => {
        done = true;
        subscription?.dispose();
        resolve();
      });
      subscription = backend.observe(name, (kv, header) => {
        if (!done) writer.send({ header: headerToWire(header), kv: kvToWire(kv) });
      });
      if (done) subscription.dispose();
    });

  const openWatch = (send: StreamSend, end: StreamEnd, credentials: Credentials): StreamSession => {
    const session = new WatchSession(
      backend,
      send,
      options.watch,
      (error) => end.fail(error),
      watchPermission(backend, credentials),
    );
    return {
      handle: (wire) => session.handle(wire as unknown as WireWatchRequest),
      // etcd's watch stream outlives its request side: watchers keep sending until the client goes.
      requestEnded: () => {},
      drained: () => session.drained(),
      close: () => session.close(),
    };
  };

  const openKeepAlive = (send: StreamSend, end: StreamEnd): StreamSession => {
    let chain: Promise<void> = Promise.resolve();
    let closed = false;
    return {
      handle: (wire) => {
        const id = wireToBigInt(String(wire.ID ?? '0'));
        // Answers keep request order, as on the gRPC stream.
        chain = chain.then(() =>
          keepAliveOnce(backend, id).then(
            (answer) => {
              if (!closed) send(answer);
            },
            (error: unknown) => {
              if (!closed) end.fail(error);
              closed = true;
            },
          ),
        );
      },
      // etcd's LeaseKeepAlive returns when its request side ends: the stream ends after the
      // answers to every message sent.
      requestEnded: () => {
        chain = chain.then(() => {
          if (!closed) end.end();
        });
      },
      close: () => {
        closed = true;
      },
    };
  };

  const serveFixed = async (path: string, response: ServerResponse): Promise<boolean> => {
    if (path === '/health') {
      const report = options.health ? await options.health() : { healthy: true, reason: '' };
      const body = report.healthy ? { health: 'true' } : { health: 'false', reason: report.reason };
      // etcd writes no Content-Type: Go sniffs one, and adds it after Content-Length.
      const text = goJsonStringify(body);
      writeGoHead(response, report.healthy ? 200 : 503, [], { contentLength: Buffer.byteLength(text) }, [
        ['Content-Type', 'text/plain; charset=utf-8'],
      ]);
      response.end(text);
      return true;
    }
    if (path === '/version') {
      const text = goJsonStringify({
        etcdserver: options.serverVersion,
        etcdcluster: options.clusterVersion,
      });
      sendGoBody(response, 200, [['Content-Type', 'application/json']], text);
      return true;
    }
    if (path === '/metrics' && options.metrics) {
      const report = await options.metrics();
      sendGoBody(response, 200, [['Content-Type', report.contentType]], report.body);
      return true;
    }
    return false;
  };

  const route = async (request: IncomingMessage, response: ServerResponse) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    // etcd's CORS wrapper answers every preflight itself.
    if (request.method === 'OPTIONS') {
      writeGoHead(response, 200, [], { contentLength: 0 });
      return response.end();
    }
    const v3Path = gatewayPath(path);
    if (v3Path === undefined) {
      if (request.method === 'GET' && (await serveFixed(path, response))) return;
      if (options.extraRoutes && (await options.extraRoutes(request, response, path))) return;
      return sendGoText(response, 404, '404 page not found');
    }
    const { routes, watch, keepAlive, snapshot, observe } = bound();
    const unary = routes.get(v3Path);
    const streaming: Record<string, () => unknown> = {
      '/v3/watch': () =>
        serveBidiStream(request, response, watch, (send, end) =>
          openWatch(
            send,
            end,
            credentialsOf(request.headers, request.socket, () => request.socket),
          ),
        ),
      '/v3/lease/keepalive': () => serveBidiStream(request, response, keepAlive, openKeepAlive),
      '/v3/maintenance/snapshot': () =>
        serveServerStream(request, response, snapshot, (writer) => {
          checkMaintenanceAdmin(
            backend,
            credentialsOf(request.headers, request.socket, () => request.socket),
          );
          return runSnapshot(writer);
        }),
      '/v3/election/observe': () => serveServerStream(request, response, observe, runObserve),
    };
    const serve = streaming[v3Path] ?? (unary && (() => serveUnary(request, response, unary)));
    // grpc-gateway's own answers: an unknown path, a known path with another method.
    if (serve === undefined) return sendGoText(response, 404, 'Not Found');
    if (request.method !== 'POST') return sendGoText(response, 405, 'Method Not Allowed');
    await serve();
  };

  return (request, response) => {
    route(request, response).catch((error: unknown) => {
      if (response.headersSent) return response.destroy();
      if (error instanceof BodyTooLargeError) {
        // The rest of the body is still coming: answer, then drop the connection instead of reusing it.
        response.shouldKeepAlive = false;
        return sendServerError(response, toWireStatus(new EtcdError('requestTooLarge')));
      }
      sendServerError(response, toWireStatus(error));
    });
  };
}

interface ServerStreamWriter {
  send(message: object): boolean;
  end(): void;
  gone(): boolean;
  writable(): Promise<void>;
  response: ServerResponse;
}

/**
 * Cuts a streaming request body into JSON values as Go's json.Decoder does: values may be
 * concatenated or separated by spaces; a value still incomplete waits for more bytes until the
 * body ends (then it is "unexpected EOF"). Bounded: one value may not exceed `valueBytesMax`.
 */
export class RequestStreamReader {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(private readonly valueBytesMax: number) {}

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
  }

  *messages(ended: boolean): Generator<{ node: JsonNode; source: Buffer }> {
    for (;;) {
      let next: ReturnType<typeof readNextJson>;
      try {
        next = readNextJson(this.buffer, 0);
      } catch (error) {
        const incomplete = error instanceof GoJsonError && error.message === 'unexpected EOF';
        if (!incomplete || ended) throw error;
        if (this.buffer.length > this.valueBytesMax) throw new EtcdError('requestTooLarge');
        return;
      }
      if (next === undefined) {
        this.buffer = Buffer.alloc(0);
        return;
      }
      // A number at the very end may still be growing.
      if (!ended && next.node.kind === 'number' && next.end === this.buffer.length) return;
      const source = this.buffer;
      this.buffer = this.buffer.subarray(next.end);
      yield { node: next.node, source };
    }
  }
}

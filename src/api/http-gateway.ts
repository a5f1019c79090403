// etcd's HTTP/1.1 JSON gateway (the grpc-gateway paths under /v3/...), plus /health, /version and
// /metrics. Requests go through the same handlers as gRPC (unary-handlers.ts, watch-session.ts),
// so validation, errors and results are identical; only the encoding differs (json-codec.ts).

import type { IncomingMessage, ServerResponse } from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import { status as grpcStatus } from '@grpc/grpc-js';
import type { Disposable, EtcdBackend } from '../server/backend.js';
import { type EtcdServiceName, serviceDefinition } from '../wire/etcd-proto.js';
import { headerToWire, kvToWire, wireToBigInt } from './convert.js';
import { ApiRequestError, EtcdError, httpStatusFromGrpc, toWireStatus } from './errors.js';
import { keepAliveOnce } from './grpc-server.js';
import { JsonDecodeError, jsonToMessage, messageToJson } from './json-codec.js';
import { snapshotMessages, writableOrGone } from './streams.js';
import { type HandlerContext, type UnaryHandler, unaryHandlers } from './unary-handlers.js';
import type { ValidationLimits } from './validate.js';
import { WatchSession, type WatchSessionOptions } from './watch-session.js';
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
  ['/v3/auth/status', 'etcdserverpb.Auth', 'AuthStatus'],
  ['/v3/auth/enable', 'etcdserverpb.Auth', 'AuthEnable'],
  ['/v3/auth/disable', 'etcdserverpb.Auth', 'AuthDisable'],
  ['/v3/auth/authenticate', 'etcdserverpb.Auth', 'Authenticate'],
  ['/v3/auth/user/list', 'etcdserverpb.Auth', 'UserList'],
  ['/v3/auth/role/list', 'etcdserverpb.Auth', 'RoleList'],
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

class BodyTooLargeError extends Error {}

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
  /** The response drained after a write reported it full. */
  drained?(): void;
  close(): void;
}

/** Writes one result line; false when the response buffer is full (wait for drained()). */
type StreamSend = (message: object) => boolean;

/**
 * Bytes a streaming response may have waiting for a slow reader before we end it. Watch pauses
 * its watchers long before this (flow control); it bounds what is pushed regardless (observe).
 */
export const streamQueuedBytesMax = 64 * 1024 * 1024;

interface StreamWriter {
  send: StreamSend;
  /** Ends the stream with grpc-gateway's error line. */
  fail(error: unknown): void;
  /** The client is gone or the stream ended. */
  gone(): boolean;
  /** Resolves when a full response can take more, or is gone. */
  writable(): Promise<void>;
}

/** grpc-gateway's streaming response: one line {"result": ...} per message, {"error": ...} last on failure. */
function streamWriter(response: ServerResponse, responseType: string, onFail: () => void): StreamWriter {
  const fail = (error: unknown) => {
    onFail();
    if (response.writableEnded || response.destroyed) return;
    const { code, details } = toWireStatus(error);
    const body = { error: { grpc_code: code, http_code: httpStatusFromGrpc(code), message: details } };
    response.end(`${JSON.stringify(body)}\n`);
  };
  const send: StreamSend = (message) => {
    if (response.writableEnded || response.destroyed) return false;
    if (response.writableLength > streamQueuedBytesMax) {
      fail(new ApiRequestError(grpcStatus.RESOURCE_EXHAUSTED, 'concord: stream fell too far behind'));
      return false;
    }
    return response.write(`${JSON.stringify({ result: messageToJson(message, responseType) })}\n`);
  };
  const gone = () => response.writableEnded || response.destroyed;
  return { send, fail, gone, writable: () => writableOrGone(response) };
}

async function readBody(request: IncomingMessage, bytesMax: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of request) {
    total += (chunk as Buffer).length;
    if (total > bytesMax) throw new BodyTooLargeError();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

function sendError(response: ServerResponse, error: unknown): void {
  const { code, details } = toWireStatus(error);
  // grpc-gateway's error body: the message twice (error + message) and the numeric gRPC code.
  sendJson(response, httpStatusFromGrpc(code), { error: details, code, message: details });
}

/** Normalizes a decoded JSON request exactly as a gRPC request would arrive (defaults, enums). */
function normalize(definition: MethodDefinition, message: Record<string, unknown>): Record<string, unknown> {
  return definition.requestDeserialize(definition.requestSerialize(message)) as Record<string, unknown>;
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
    const json = body.length === 0 ? {} : parseJson(body.toString('utf8'));
    const wire = normalize(route.definition, jsonToMessage(json, route.requestType));
    const abort = new AbortController();
    response.on('close', () => abort.abort());
    const result = await handler(wire, abort.signal);
    sendJson(response, 200, messageToJson(result, route.responseType));
  };

  /** A bidirectional stream: the request body is a sequence of JSON messages. */
  const serveStream = (
    request: IncomingMessage,
    response: ServerResponse,
    stream: StreamBinding,
    open: (send: StreamSend, fail: (error: unknown) => void) => StreamSession,
  ) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    let session: StreamSession | undefined;
    const { send, fail } = streamWriter(response, stream.responseType, () => session?.close());
    session = open(send, fail);
    const splitter = new JsonObjectSplitter(options.limits.requestBytesMax);
    request.on('data', (chunk: Buffer) => {
      try {
        for (const text of splitter.push(chunk.toString('utf8'))) {
          session.handle(normalize(stream.definition, jsonToMessage(parseJson(text), stream.requestType)));
        }
      } catch (error) {
        fail(error);
      }
    });
    response.on('drain', () => session.drained?.());
    response.on('close', () => session.close());
  };

  /** A server stream: one JSON request body, then result lines until done (or forever: observe). */
  const serveServerStream = async (
    request: IncomingMessage,
    response: ServerResponse,
    stream: StreamBinding,
    run: (response: ServerResponse, writer: StreamWriter, wire: Record<string, unknown>) => Promise<void>,
  ) => {
    const body = await readBody(request, bodyBytesMax);
    const json = body.length === 0 ? {} : parseJson(body.toString('utf8'));
    const wire = normalize(stream.definition, jsonToMessage(json, stream.requestType));
    response.writeHead(200, { 'content-type': 'application/json' });
    const writer = streamWriter(response, stream.responseType, () => {});
    try {
      await run(response, writer, wire);
    } catch (error) {
      writer.fail(error);
    }
  };

  const runSnapshot = async (response: ServerResponse, writer: StreamWriter) => {
    // Leaving the loop early returns the backend's iterator (it frees its read transaction).
    for await (const message of snapshotMessages(backend)) {
      if (writer.gone()) return;
      if (!writer.send(message)) await writer.writable();
    }
    if (!writer.gone()) response.end();
  };

  const runObserve = (response: ServerResponse, writer: StreamWriter, wire: Record<string, unknown>) =>
    new Promise<void>((resolve) => {
      const name = Buffer.isBuffer(wire.name) ? wire.name : Buffer.alloc(0);
      let subscription: Disposable | undefined;
      let done = false;
      // 'close' also follows our own end() after a failure (e.g. the queued-bytes bound).
      response.once('close', () => {
        done = true;
        subscription?.dispose();
        resolve();
      });
      subscription = backend.observe(name, (kv, header) => {
        if (!done) writer.send({ header: headerToWire(header), kv: kvToWire(kv) });
      });
      if (done) subscription.dispose();
    });

  const openWatch = (send: StreamSend, fail: (error: unknown) => void): StreamSession => {
    const session = new WatchSession(backend, send, options.watch, fail);
    return {
      handle: (wire) => session.handle(wire as unknown as WireWatchRequest),
      drained: () => session.drained(),
      close: () => session.close(),
    };
  };

  const openKeepAlive = (send: StreamSend, fail: (error: unknown) => void): StreamSession => {
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
            (error: unknown) => fail(error),
          ),
        );
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
      sendJson(response, report.healthy ? 200 : 503, body);
      return true;
    }
    if (path === '/version') {
      sendJson(response, 200, { etcdserver: options.serverVersion, etcdcluster: options.clusterVersion });
      return true;
    }
    if (path === '/metrics' && options.metrics) {
      const report = await options.metrics();
      response.writeHead(200, { 'content-type': report.contentType });
      response.end(report.body);
      return true;
    }
    return false;
  };

  return (request, response) => {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    const run = async () => {
      if (request.method === 'GET' && (await serveFixed(path, response))) return;
      const { routes, watch, keepAlive, snapshot, observe } = bound();
      if (request.method === 'POST' && path === '/v3/watch') {
        return serveStream(request, response, watch, openWatch);
      }
      if (request.method === 'POST' && path === '/v3/lease/keepalive') {
        return serveStream(request, response, keepAlive, openKeepAlive);
      }
      if (request.method === 'POST' && path === '/v3/maintenance/snapshot') {
        return serveServerStream(request, response, snapshot, runSnapshot);
      }
      if (request.method === 'POST' && path === '/v3/election/observe') {
        return serveServerStream(request, response, observe, runObserve);
      }
      const route = routes.get(path);
      if (request.method === 'POST' && route !== undefined) return serveUnary(request, response, route);
      if (options.extraRoutes && (await options.extraRoutes(request, response, path))) return;
      sendJson(response, 404, { error: 'Not Found', code: 5, message: 'Not Found' });
    };
    run().catch((error: unknown) => {
      if (response.headersSent) return response.destroy();
      if (error instanceof BodyTooLargeError) {
        // The rest of the body is still coming: answer, then drop the connection instead of reusing it.
        response.setHeader('connection', 'close');
        return sendError(response, new EtcdError('requestTooLarge'));
      }
      if (error instanceof JsonDecodeError) return sendError(response, new ApiRequestError(3, error.message));
      sendError(response, error);
    });
  };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new JsonDecodeError(`invalid JSON: ${(error as Error).message}`);
  }
}

/** Splits a stream of concatenated JSON objects (grpc-gateway's streaming request body). */
export class JsonObjectSplitter {
  private buffer = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private scanned = 0;

  constructor(private readonly objectBytesMax: number) {}

  push(text: string): string[] {
    this.buffer += text;
    const objects: string[] = [];
    let start = 0;
    for (let i = this.scanned; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') this.inString = false;
      } else if (c === '"') this.inString = true;
      else if (c === '{') this.depth++;
      else if (c === '}' && --this.depth === 0) {
        objects.push(this.buffer.slice(start, i + 1).trim());
        start = i + 1;
      } else if (this.depth === 0 && c !== undefined && c.trim() !== '') {
        throw new JsonDecodeError(`unexpected ${JSON.stringify(c)} between JSON objects`);
      }
    }
    this.buffer = this.buffer.slice(start);
    this.scanned = this.buffer.length;
    if (this.buffer.length > this.objectBytesMax) throw new EtcdError('requestTooLarge');
    return objects;
  }
}

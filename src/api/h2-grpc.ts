// A lean gRPC server on node:http2's raw stream API, for the etcd v3 services.
//
// Why not @grpc/grpc-js's Server: profiles of a member under `concord bench put` showed its
// per-call machinery (interceptor chain, Metadata objects, channelz, deadline bookkeeping, its
// framer and event emitters) as the largest JavaScript cost per call. This server does only what
// the etcd API needs: route by :path, length-prefixed messages, unary and streaming calls,
// grpc-timeout, cancellation, backpressure, statuses in trailers. No compression, no interceptors,
// no metadata beyond the headers object HTTP/2 already parsed.
//
// Wire format (gRPC over HTTP/2): a request is HEADERS (POST, :path /pkg.Service/Method,
// content-type application/grpc...) then DATA carrying messages, each a 1-byte compressed flag and
// a 4-byte big-endian length before the body. A response is HEADERS (:status 200) + messages +
// trailers with grpc-status/grpc-message, or a single "trailers-only" HEADERS when nothing is sent.

import {
  createServer,
  type Http2Server,
  type Http2Session,
  constants as http2Constants,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Duplex } from 'node:stream';
import { status as Status } from '@grpc/grpc-js';
import { GrpcCallStats, type MethodCallStats } from './call-stats.js';

export interface H2Method {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestDeserialize: (bytes: Buffer) => unknown;
  responseSerialize: (message: never) => Buffer;
}

/**
 * A request the method's decoder refused, with the decoder's own text. The call ends INTERNAL
 * with grpc-go's wording around it (etcd's), which differs for unary and streaming calls.
 */
export class RequestDecodeError extends Error {
  readonly code = 'request-decode';
}

export interface H2Status {
  code: Status;
  details: string;
}

/**
 * Unary handlers that declare `signal` see it abort on cancel or deadline; others skip it (unless
 * added with `wantsSignal`). `call` has the request headers (metadata) and the stream.
 */
export type H2UnaryHandler = (request: never, signal: AbortSignal, call: H2CallInfo) => Promise<object>;

export interface H2CallInfo {
  headers: IncomingHttpHeaders;
  stream: ServerHttp2Stream;
}
export type H2StreamingHandler = (call: H2ServerCall) => void;

export interface H2GrpcServerOptions {
  /** Largest request message accepted; a longer one ends its call with RESOURCE_EXHAUSTED. */
  receiveMessageBytesMax: number;
  /** Maps whatever a handler throws to the status sent. */
  toStatus: (error: unknown) => H2Status;
  /**
   * SETTINGS_MAX_CONCURRENT_STREAMS advertised to every client (etcd's --max-concurrent-streams,
   * 0 to 2^32-1). Clients queue calls beyond it; nghttp2 ends the connection of a client that
   * opens more anyway. Absent: 2^32-1, as etcd's default.
   */
  concurrentStreamsMax?: number;
}

/** Bodies up to this size are copied behind their 5-byte prefix: one buffer, one DATA write. */
const frameCopyBytesMax = 64 * 1024;
const messagePrefixBytes = 5;
/** Connection-level receive window: lets several large puts stream in without waiting on us. */
const sessionWindowBytes = 8 * 1024 * 1024;
/** grpc-timeout's value has at most 8 digits (gRPC over HTTP/2 spec). */
const timeoutPattern = /^(\d{1,8})([HMSmun])$/;
const timeoutUnitMs: Readonly<Record<string, number>> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000_001,
};
/** etcd's --max-concurrent-streams default (math.MaxUint32), also HTTP/2's largest value. */
export const concurrentStreamsMaxDefault = 2 ** 32 - 1;
/** Node's setTimeout takes at most 2^31-1 ms; a longer deadline is as good as none. */
const timerMsMax = 2 ** 31 - 1;

const responseHeaders: OutgoingHttpHeaders = {
  ':status': 200,
  'content-type': 'application/grpc+proto',
  'grpc-accept-encoding': 'identity',
};
const okTrailers: OutgoingHttpHeaders = { 'grpc-status': '0' };
const respondOptions = { waitForTrailers: true, sendDate: false };
const trailersOnlyOptions = { endStream: true, sendDate: false };

/** Handed to handlers that do not declare the signal parameter: they never look at it. */
const neverAborted = new AbortController().signal;

function ignoreError(): void {}

/** Shared 'wantTrailers' listener of unary calls: `this` is the stream (no closure per call). */
function sendOkTrailers(this: ServerHttp2Stream): void {
  this.sendTrailers(okTrailers);
}

/** grpc-message is percent-encoded: bytes outside printable ASCII, and '%' itself. */
export function encodeGrpcMessage(text: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(text)) return text;
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    if (byte >= 0x20 && byte <= 0x7e && byte !== 0x25) out += String.fromCharCode(byte);
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Milliseconds of a grpc-timeout header; undefined when absent or unparsable (no deadline). */
export function parseGrpcTimeoutMs(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const match = timeoutPattern.exec(value);
  if (match === null) return undefined;
  const ms = Number(match[1]) * timeoutUnitMs[match[2]!]!;
  return ms >= timerMsMax ? undefined : ms;
}

function trailersOnly(stream: ServerHttp2Stream, code: Status, details: string): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc+proto',
      'grpc-status': String(code),
      'grpc-message': encodeGrpcMessage(details),
    },
    trailersOnlyOptions,
  );
}

/** One message framed for the wire; bodies above frameCopyBytesMax go out as two writes. */
function framePrefix(length: number): Buffer {
  const prefix = Buffer.allocUnsafe(messagePrefixBytes);
  prefix[0] = 0;
  prefix.writeUInt32BE(length, 1);
  return prefix;
}

function frameCopy(body: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(messagePrefixBytes + body.length);
  frame[0] = 0;
  frame.writeUInt32BE(body.length, 1);
  body.copy(frame, messagePrefixBytes);
  return frame;
}

interface Route {
  method: H2Method;
  unary?: H2UnaryHandler;
  /** Create an AbortSignal for each call of the unary handler. */
  unaryWantsSignal?: boolean;
  streaming?: H2StreamingHandler;
  stats: MethodCallStats;
}

/**
 * The parts of a call both kinds share: reassembling length-prefixed messages from DATA chunks
 * (bounded by the server's message size), the deadline, and the call's end state.
 */
abstract class CallBase {
  /** Set once a status went out or the client went away: nothing more is sent or delivered. */
  protected finished = false;
  private prefix: Buffer | undefined;
  private prefixFilled = 0;
  private body: Buffer | undefined;
  private bodyFilled = 0;
  protected deadline: NodeJS.Timeout | undefined;

  constructor(
    protected readonly server: H2GrpcServer,
    protected readonly stream: ServerHttp2Stream,
    protected readonly route: Route,
    /** The request headers: gRPC metadata (e.g. the auth token) included. */
    readonly headers: IncomingHttpHeaders,
  ) {}

  /** The call's HTTP/2 session (one per connection). */
  get session(): ServerHttp2Stream['session'] {
    return this.stream.session;
  }

  /** The connection's socket (a TLSSocket on an https:// port). */
  get socket(): ServerHttp2Stream['session'] extends infer S
    ? S extends { socket: infer T }
      ? T
      : undefined
    : undefined {
    return this.stream.session?.socket;
  }

  protected abstract onRequest(message: unknown): void;
  /** The call ends with `code` (after queued messages, if any were sent). */
  protected abstract finishWith(code: Status, details: string): void;

  protected startDeadline(timeoutMs: number | undefined): void {
    if (timeoutMs === undefined) return;
    this.deadline = setTimeout(() => this.onDeadline(), timeoutMs);
  }

  protected onDeadline(): void {
    this.deadline = undefined;
    this.finishWith(Status.DEADLINE_EXCEEDED, 'Deadline exceeded');
  }

  protected clearDeadline(): void {
    if (this.deadline === undefined) return;
    clearTimeout(this.deadline);
    this.deadline = undefined;
  }

  /** Feeds one DATA chunk; messages complete in it are delivered in order. */
  protected onData(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length && !this.finished) {
      if (this.body === undefined) {
        let length: number;
        let flag: number;
        if (this.prefixFilled === 0 && chunk.length - offset >= messagePrefixBytes) {
          flag = chunk[offset]!;
          length = chunk.readUInt32BE(offset + 1);
          offset += messagePrefixBytes;
        } else {
          this.prefix ??= Buffer.allocUnsafe(messagePrefixBytes);
          const take = Math.min(messagePrefixBytes - this.prefixFilled, chunk.length - offset);
          chunk.copy(this.prefix, this.prefixFilled, offset, offset + take);
          this.prefixFilled += take;
          offset += take;
          if (this.prefixFilled < messagePrefixBytes) return;
          this.prefixFilled = 0;
          flag = this.prefix[0]!;
          length = this.prefix.readUInt32BE(1);
        }
        if (!this.acceptPrefix(flag, length)) return;
        // The common case: the whole message is in this chunk; hand out a view, no copy.
        if (chunk.length - offset >= length) {
          this.deliver(chunk.subarray(offset, offset + length));
          offset += length;
          continue;
        }
        this.body = Buffer.allocUnsafe(length);
        this.bodyFilled = 0;
      }
      const take = Math.min(this.body.length - this.bodyFilled, chunk.length - offset);
      chunk.copy(this.body, this.bodyFilled, offset, offset + take);
      this.bodyFilled += take;
      offset += take;
      if (this.bodyFilled === this.body.length) {
        const message = this.body;
        this.body = undefined;
        this.deliver(message);
      }
    }
  }

  private acceptPrefix(flag: number, length: number): boolean {
    if (flag !== 0) {
      this.finishWith(
        Status.UNIMPLEMENTED,
        'grpc: Decompressor is not installed for grpc-encoding of a compressed message',
      );
      return false;
    }
    const max = this.server.options.receiveMessageBytesMax;
    if (length > max) {
      this.finishWith(
        Status.RESOURCE_EXHAUSTED,
        `grpc: received message larger than max (${length} vs. ${max})`,
      );
      return false;
    }
    return true;
  }

  private deliver(bytes: Buffer): void {
    let message: unknown;
    try {
      message = this.route.method.requestDeserialize(bytes);
    } catch (error) {
      const text = error instanceof Error ? error.message : String(error);
      this.finishWith(
        Status.INTERNAL,
        this.route.method.requestStream
          ? `grpc: failed to unmarshal the received message ${text}`
          : `grpc: error unmarshalling request: ${text}`,
      );
      return;
    }
    this.onRequest(message);
  }

  protected serialize(message: unknown): Buffer | undefined {
    try {
      return (this.route.method.responseSerialize as (message: unknown) => Buffer)(message);
    } catch (error) {
      this.finishWith(Status.INTERNAL, `Error serializing response: ${(error as Error).message}`);
      return undefined;
    }
  }
}

/** One request in, one response (or status) out. */
class UnaryCall extends CallBase {
  private request: unknown;
  private received = false;
  private abort: AbortController | undefined;

  constructor(
    server: H2GrpcServer,
    stream: ServerHttp2Stream,
    route: Route,
    timeoutMs: number | undefined,
    headers: IncomingHttpHeaders,
  ) {
    super(server, stream, route, headers);
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.onHalfClose());
    if (route.unaryWantsSignal ?? route.unary!.length >= 2) this.abort = new AbortController();
    this.startDeadline(timeoutMs);
    // Only calls that can be told about cancellation (a signal, a timer) listen for it.
    if (this.abort !== undefined || this.deadline !== undefined) {
      stream.on('close', () => this.onClose());
    }
  }

  protected onRequest(message: unknown): void {
    if (this.received) {
      this.finishWith(
        Status.UNIMPLEMENTED,
        `Received a second request message for unary method ${this.route.method.path}`,
      );
      return;
    }
    this.received = true;
    this.request = message;
  }

  private onHalfClose(): void {
    if (this.finished) return;
    if (!this.received) {
      this.finishWith(
        Status.UNIMPLEMENTED,
        `Received no request message for unary method ${this.route.method.path}`,
      );
      return;
    }
    const handler = this.route.unary!;
    let pending: Promise<object>;
    try {
      pending = handler(this.request as never, this.abort?.signal ?? neverAborted, {
        headers: this.headers,
        stream: this.stream,
      });
    } catch (error) {
      this.fail(error);
      return;
    }
    this.request = undefined;
    pending.then(
      (response) => this.respond(response),
      (error: unknown) => this.fail(error),
    );
  }

  private respond(response: object): void {
    const stream = this.stream;
    if (this.finished || stream.destroyed || stream.closed) return;
    const body = this.serialize(response);
    if (body === undefined) return;
    this.finished = true;
    this.route.stats.handled[Status.OK]!++;
    this.clearDeadline();
    stream.respond(responseHeaders, respondOptions);
    stream.on('wantTrailers', sendOkTrailers);
    if (body.length <= frameCopyBytesMax) {
      stream.end(frameCopy(body));
    } else {
      stream.write(framePrefix(body.length));
      stream.end(body);
    }
  }

  private fail(error: unknown): void {
    const { code, details } = this.server.options.toStatus(error);
    this.finishWith(code, details);
  }

  protected finishWith(code: Status, details: string): void {
    if (this.finished) return;
    this.finished = true;
    this.route.stats.handled[code]!++;
    this.clearDeadline();
    if (code === Status.DEADLINE_EXCEEDED || code === Status.CANCELLED) this.abort?.abort();
    trailersOnly(this.stream, code, details);
  }

  private onClose(): void {
    this.clearDeadline();
    if (this.finished) return;
    this.finished = true;
    this.route.stats.handled[Status.CANCELLED]!++;
    this.abort?.abort();
  }
}

/**
 * A streaming call as its handler sees it. Request messages arrive through `onMessage` (bidi) or
 * as `request` (server-streaming: the handler starts once the one request is in). `write`
 * answers false once the HTTP/2 stream's buffer is full (the client reads slower than we write);
 * `onDrain` fires when it empties. `end`/`fail` send the status after every queued message.
 */
export class H2ServerCall extends CallBase {
  request: unknown;
  onMessage: ((message: unknown) => void) | undefined;
  /** The client finished sending (it still reads). */
  onHalfClose: (() => void) | undefined;
  /** The client reset the stream, the connection went away, or the deadline passed. */
  onCancel: (() => void) | undefined;
  onDrain: (() => void) | undefined;
  private started = false;
  private cancelledFlag = false;
  private queued = 0;
  private trailers: OutgoingHttpHeaders = okTrailers;
  private writableWaiters: Array<() => void> = [];
  private corked = false;
  private readonly onWritten = () => {
    this.queued--;
  };
  private readonly uncork = () => {
    this.corked = false;
    this.stream.uncork();
  };

  constructor(
    server: H2GrpcServer,
    stream: ServerHttp2Stream,
    route: Route,
    timeoutMs: number | undefined,
    headers: IncomingHttpHeaders,
  ) {
    super(server, stream, route, headers);
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.onClientEnd());
    stream.on('close', () => this.onClose());
    stream.on('drain', () => this.onStreamDrain());
    stream.on('wantTrailers', () => stream.sendTrailers(this.trailers));
    this.startDeadline(timeoutMs);
    if (route.method.requestStream) this.start();
  }

  /** True once the client went away (reset, disconnect, deadline). */
  get cancelled(): boolean {
    return this.cancelledFlag;
  }

  /** True once a status was sent or the client went away: writes are dropped. */
  get done(): boolean {
    return this.finished;
  }

  /** Messages handed to write() that HTTP/2 has not taken yet (flow control holds them). */
  get queuedMessages(): number {
    return this.queued;
  }

  write(message: unknown): boolean {
    if (this.finished) return false;
    const body = this.serialize(message);
    if (body === undefined) return false;
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return false;
    if (!stream.headersSent) stream.respond(responseHeaders, respondOptions);
    this.queued++;
    // Messages written in one turn (a watch fan-out answers many watchers at once) reach nghttp2
    // as one writev at the end of the turn instead of one native write each.
    if (!this.corked) {
      this.corked = true;
      stream.cork();
      process.nextTick(this.uncork);
    }
    if (body.length <= frameCopyBytesMax) return stream.write(frameCopy(body), this.onWritten);
    stream.write(framePrefix(body.length));
    return stream.write(body, this.onWritten);
  }

  /** Ends the call with status OK after the queued messages. */
  end(): void {
    this.finishWith(Status.OK, '');
  }

  /** Ends the call with the status `error` maps to, after the queued messages. */
  fail(error: unknown): void {
    const { code, details } = this.server.options.toStatus(error);
    this.finishWith(code, details);
  }

  /** Resolves once write() may go on, or the call is over (waiting on a gone client never hangs). */
  whenWritable(): Promise<void> {
    if (this.finished || !this.stream.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.writableWaiters.push(resolve));
  }

  protected onRequest(message: unknown): void {
    if (this.route.method.requestStream) {
      this.guard(() => this.onMessage?.(message));
      return;
    }
    if (this.request !== undefined) {
      this.finishWith(
        Status.UNIMPLEMENTED,
        `Received a second request message for server streaming method ${this.route.method.path}`,
      );
      return;
    }
    this.request = message;
  }

  protected finishWith(code: Status, details: string): void {
    if (this.finished) return;
    this.finished = true;
    this.route.stats.handled[code]!++;
    this.clearDeadline();
    this.wakeWriters();
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    if (!stream.headersSent) {
      trailersOnly(stream, code, details);
      return;
    }
    if (code !== Status.OK) {
      this.trailers = { 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(details) };
    }
    stream.end();
  }

  protected override onDeadline(): void {
    super.onDeadline();
    this.cancelledFlag = true;
    this.guard(() => this.onCancel?.());
  }

  private start(): void {
    this.started = true;
    this.guard(() => this.route.streaming!(this));
  }

  private onClientEnd(): void {
    if (this.finished) return;
    if (this.route.method.requestStream) {
      this.guard(() => this.onHalfClose?.());
      return;
    }
    if (this.request === undefined) {
      this.finishWith(
        Status.UNIMPLEMENTED,
        `Received no request message for server streaming method ${this.route.method.path}`,
      );
      return;
    }
    if (!this.started) this.start();
  }

  private onClose(): void {
    this.clearDeadline();
    this.wakeWriters();
    if (this.finished) return;
    this.finished = true;
    this.route.stats.handled[Status.CANCELLED]!++;
    this.cancelledFlag = true;
    this.guard(() => this.onCancel?.());
  }

  private onStreamDrain(): void {
    this.wakeWriters();
    if (!this.finished) this.guard(() => this.onDrain?.());
  }

  private wakeWriters(): void {
    if (this.writableWaiters.length === 0) return;
    const waiters = this.writableWaiters;
    this.writableWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** A handler callback that throws ends its call with the mapped status, never the process. */
  private guard(body: () => void): void {
    try {
      body();
    } catch (error) {
      this.fail(error);
    }
  }
}

/**
 * The server: routes each HTTP/2 stream to its method's handler. Connections come in through
 * `injectConnection` (the client port's protocol sniffer owns the listening socket) or `listen`.
 */
export class H2GrpcServer {
  private readonly routes = new Map<string, Route>();
  /** Calls started and finished per method (grpc_server_* metrics). */
  readonly callStats = new GrpcCallStats();
  private readonly sessions = new Set<Http2Session>();
  private readonly http2: Http2Server;
  private listening = false;
  private closing = false;

  constructor(readonly options: H2GrpcServerOptions) {
    this.http2 = createServer({
      // As grpc-js: Node's session memory check misbehaves once reached, so it is left open; the
      // per-call bounds (message size, queued messages) are what limit memory.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
      maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER,
      settings: { maxConcurrentStreams: options.concurrentStreamsMax ?? concurrentStreamsMaxDefault },
    });
    this.http2.on('session', (session) => this.onSession(session));
    this.http2.on('stream', (stream, headers) => this.onStream(stream, headers));
  }

  addUnary(method: H2Method, handler: H2UnaryHandler, options: { wantsSignal?: boolean } = {}): void {
    if (method.requestStream || method.responseStream) throw new Error(`${method.path} is not unary`);
    this.addRoute({
      method,
      unary: handler,
      unaryWantsSignal: options.wantsSignal,
      stats: this.callStats.register(method.path, false, false),
    });
  }

  addStreaming(method: H2Method, handler: H2StreamingHandler): void {
    if (!method.requestStream && !method.responseStream) throw new Error(`${method.path} is unary`);
    this.addRoute({
      method,
      streaming: handler,
      stats: this.callStats.register(method.path, method.requestStream, method.responseStream),
    });
  }

  /** Serves HTTP/2 on a socket whose bytes (and any pushed-back preface) are still unread. */
  injectConnection(socket: Duplex): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.http2.emit('connection', socket);
  }

  /** Binds a port of its own (tests, benchmarks); resolves with the port. */
  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.http2.once('error', reject);
      this.http2.listen(port, host, () => {
        this.http2.off('error', reject);
        this.listening = true;
        const address = this.http2.address();
        if (address === null || typeof address === 'string')
          reject(new Error('h2 grpc server has no TCP address'));
        else resolve(address.port);
      });
    });
  }

  /** Open HTTP/2 connections (for tests that check close frees everything). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /**
   * GOAWAY to every connection (no new calls), lets in-flight calls finish for up to `graceMs`,
   * then destroys what is left. Resolves once every connection is gone.
   */
  async close(graceMs = 1000): Promise<void> {
    this.closing = true;
    const listening = this.listening
      ? new Promise<void>((resolve) => this.http2.close(() => resolve()))
      : Promise.resolve();
    this.listening = false;
    const sessions = [...this.sessions].map(
      (session) =>
        new Promise<void>((resolve) => {
          if (session.destroyed) return resolve();
          session.once('close', () => resolve());
          session.close();
        }),
    );
    const force = setTimeout(() => {
      for (const session of this.sessions) session.destroy();
    }, graceMs);
    await Promise.all(sessions);
    clearTimeout(force);
    await listening;
  }

  private addRoute(route: Route): void {
    if (this.routes.has(route.method.path)) throw new Error(`${route.method.path} registered twice`);
    this.routes.set(route.method.path, route);
  }

  private onSession(session: Http2Session): void {
    // A broken connection must never take the process down; its streams see 'close'.
    session.on('error', ignoreError);
    if (this.closing) {
      session.destroy();
      return;
    }
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    // A server session is set up synchronously on its already-connected socket.
    if (!session.destroyed) session.setLocalWindowSize(sessionWindowBytes);
  }

  private onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', ignoreError);
    // The session can fail in the same read that opened the stream (a client opening streams
    // beyond SETTINGS_MAX_CONCURRENT_STREAMS): the stream arrives destroyed, and respond() on it
    // would throw out of this event handler and take the process down.
    if (stream.destroyed || stream.closed) return;
    const contentType = headers['content-type'];
    if (
      headers[':method'] !== 'POST' ||
      typeof contentType !== 'string' ||
      !contentType.startsWith('application/grpc')
    ) {
      stream.respond({ ':status': http2Constants.HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE }, trailersOnlyOptions);
      return;
    }
    const path = headers[':path'] ?? '';
    const route = this.routes.get(path);
    if (route === undefined) {
      trailersOnly(stream, Status.UNIMPLEMENTED, `The server does not implement the method ${path}`);
      return;
    }
    const encoding = headers['grpc-encoding'];
    if (encoding !== undefined && encoding !== 'identity') {
      trailersOnly(
        stream,
        Status.UNIMPLEMENTED,
        `grpc: Decompressor is not installed for grpc-encoding "${encoding}"`,
      );
      return;
    }
    route.stats.started++;
    const timeoutMs = parseGrpcTimeoutMs(headers['grpc-timeout']);
    if (route.unary !== undefined) new UnaryCall(this, stream, route, timeoutMs, headers);
    else new H2ServerCall(this, stream, route, timeoutMs, headers);
  }
}

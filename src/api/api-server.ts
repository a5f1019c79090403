// One client port for gRPC and HTTP/1.1, as etcd serves both on --listen-client-urls.
//
// How: a plain net.Server accepts every connection and reads its first bytes. A connection that
// opens with the HTTP/2 client preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", what gRPC clients
// send with prior knowledge over cleartext) is handed, with those bytes pushed back, to the gRPC
// server's node:http2 server (h2-grpc.ts; Node's http2 session picks up bytes already buffered on
// the socket). Anything else is handed to a Node
// http.Server running the JSON gateway. No extra hop or proxy: after the first packet the socket
// belongs to one server, so the steady-state cost is zero; the sniff costs one buffered read.

import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import {
  createServer as createTlsServer,
  type SecureContextOptions,
  type TLSSocket,
  type TlsOptions,
} from 'node:tls';
import type { EtcdBackend } from '../services/backend.js';
import type { GrpcCallStats } from './call-stats.js';
import { UNDERLYING_SOCKET } from './credentials.js';
import { createGrpcServer, defaultGrpcServerOptions, type GrpcServerOptions } from './grpc-server.js';
import { wrapHttp2Connection } from './h2-authority.js';
import {
  createGatewayHandler,
  type GatewayOptions,
  type HealthReport,
  type MetricsReport,
} from './http-gateway.js';
import { type ClientLimit, ClientLimitStats } from './limit-stats.js';

const http2Preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export interface ApiServerOptions {
  backend: EtcdBackend;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  grpc?: Partial<GrpcServerOptions>;
  serverVersion?: string;
  clusterVersion?: string;
  health?: () => Promise<HealthReport>;
  metrics?: () => Promise<MetricsReport>;
  extraRoutes?: GatewayOptions['extraRoutes'];
  /** Connections whose first bytes have not arrived after this long are closed. */
  sniffTimeoutMs?: number;
  /** Serve https:// (TLS); the certificate may change while serving. */
  tls?: ApiServerTls;
  /**
   * Open connections (gRPC and gateway alike) beyond which new ones are closed as soon as they
   * are accepted (--max-client-connections). 0 or absent: no limit.
   */
  clientConnectionsMax?: number;
  /** Called on each refusal by a limit (the member logs it). */
  onLimitRefused?: (limit: ClientLimit) => void;
}

/** The certificate source of an https:// client port (transport/tls-config.ts's TlsFileWatcher). */
export interface ApiServerTls {
  serverOptions(): TlsOptions;
  /** What a rotation replaces: certificate, key, CA, versions, ciphers. */
  contextOptions(): SecureContextOptions;
  /** Called after the files changed; returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/**
 * ALPN: gRPC clients (grpc-go, grpc-js) offer only h2; browsers, curl and HTTP libraries offer
 * http/1.1 (often with h2). Those get http/1.1 so that the JSON gateway, an HTTP/1.1 server,
 * answers them; the first bytes decide the protocol anyway, as on a plaintext port.
 */
function selectAlpn({ protocols }: { protocols: string[] }): string | undefined {
  if (protocols.includes('http/1.1')) return 'http/1.1';
  if (protocols.includes('h2')) return 'h2';
  return undefined;
}

export interface ApiServer {
  readonly host: string;
  readonly port: number;
  /** e.g. http://127.0.0.1:2379, usable by etcdctl --endpoints and by curl alike. */
  readonly url: string;
  /** gRPC calls started and finished per method, for /metrics. */
  readonly callStats: GrpcCallStats;
  /** What the connection and watcher limits refused, for /metrics. */
  readonly limitStats: ClientLimitStats;
  /** Stops accepting, ends open connections (grace for in-flight gRPC calls), frees the port. */
  close(graceMs?: number): Promise<void>;
}

type Protocol = 'http2' | 'http1' | 'undecided';

/** Classifies the first bytes of a connection; undecided until they diverge from the preface. */
export function classifyPreface(head: Buffer): Protocol {
  const length = Math.min(head.length, http2Preface.length);
  if (head.subarray(0, length).equals(http2Preface.subarray(0, length))) {
    return length === http2Preface.length ? 'http2' : 'undecided';
  }
  return 'http1';
}

export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const limitStats = new ClientLimitStats(options.onLimitRefused);
  const merged: GrpcServerOptions = { ...defaultGrpcServerOptions, ...options.grpc };
  const grpcOptions: GrpcServerOptions = { ...merged, watch: { ...merged.watch, limitStats } };
  const grpcServer = createGrpcServer(options.backend, grpcOptions);
  // No whole-request deadline: /v3/watch request bodies stay open as long as the watch does. No
  // idle timeout on kept-alive connections either, as etcd's Go server: a client that reuses a
  // pooled connection (Patroni's urllib3) must not race a server-side close.
  const httpServer: HttpServer = createHttpServer(
    { requestTimeout: 0, keepAliveTimeout: 0 },
    createGatewayHandler(options.backend, {
      limits: grpcOptions.limits,
      watch: grpcOptions.watch,
      serverVersion: options.serverVersion ?? '3.4.0',
      clusterVersion: options.clusterVersion ?? '3.4.0',
      health: options.health,
      metrics: options.metrics,
      extraRoutes: options.extraRoutes,
    }),
  );
  const sniffTimeoutMs = options.sniffTimeoutMs ?? 10_000;
  const sockets = new Set<Socket>();
  const serve = (socket: Socket) => {
    sniff(socket, sniffTimeoutMs, (protocol, head) => {
      if (protocol === 'http2') {
        // Node's http2 session takes the pushed-back bytes from the socket buffer itself. It
        // refuses a TLS socket that did not negotiate h2 by ALPN: such a client (prior knowledge
        // over TLS) goes through the wrapper, which has no ALPN state.
        const tlsWithoutH2 =
          (socket as TLSSocket).encrypted === true && (socket as TLSSocket).alpnProtocol !== 'h2';
        if (opensWithEmptySettings(head) || tlsWithoutH2) {
          const wrapped = wrapHttp2Connection(socket);
          // The wrapper has no TLS state; the client certificate (--client-cert-auth) is the socket's.
          Object.defineProperty(wrapped, UNDERLYING_SOCKET, { value: socket });
          grpcServer.injectConnection(wrapped);
        } else grpcServer.injectConnection(socket);
      } else {
        httpServer.emit('connection', socket);
        socket.resume();
      }
    });
  };
  const track = (socket: Socket) => {
    // Small request/response traffic: Nagle's algorithm would hold replies for a delayed ACK
    // (~40 ms). http2 sets this itself only on sockets it is handed directly, not on our wrapper.
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  let unsubscribe = () => {};
  let netServer: NetServer;
  const tls = options.tls;
  if (tls === undefined) {
    netServer = createNetServer((socket) => {
      track(socket);
      serve(socket);
    });
  } else {
    const tlsServer = createTlsServer({ ...tls.serverOptions(), ALPNCallback: selectAlpn }, serve);
    // The TCP socket, tracked from accept so that close() also ends handshakes in progress.
    tlsServer.on('connection', track);
    tlsServer.on('secureConnection', (socket: TLSSocket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    // A client refused during the handshake (no or a foreign certificate): its socket is gone.
    tlsServer.on('tlsClientError', () => undefined);
    unsubscribe = tls.onChange(() => tlsServer.setSecureContext(tls.contextOptions()));
    netServer = tlsServer;
  }
  limitConnections(netServer, options.clientConnectionsMax ?? 0, limitStats);
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    netServer.once('error', reject);
    netServer.listen(options.port ?? 0, host, () => {
      netServer.off('error', reject);
      resolve();
    });
  });
  const address = netServer.address();
  if (address === null || typeof address === 'string') throw new Error('api server has no TCP address');
  const close = async (graceMs = 1000) => {
    unsubscribe();
    const force = setTimeout(() => {
      for (const socket of sockets) socket.destroy();
    }, graceMs);
    force.unref();
    const listenerClosed = new Promise<void>((resolve) => netServer.close(() => resolve()));
    httpServer.closeAllConnections();
    await grpcServer.close(graceMs);
    // Sockets still undecided (mid-sniff) or owned by the gateway go now.
    for (const socket of sockets) socket.destroy();
    await listenerClosed;
    clearTimeout(force);
  };
  const bracketed = host.includes(':') ? `[${host}]` : host;
  const scheme = tls === undefined ? 'http' : 'https';
  return {
    host,
    port: address.port,
    url: `${scheme}://${bracketed}:${address.port}`,
    callStats: grpcServer.callStats,
    limitStats,
    close,
  };
}

/**
 * Node closes a connection accepted beyond `maxConnections` before any byte is read (no sniff,
 * no TLS handshake, no HTTP/2 session) and emits 'drop' for it.
 */
function limitConnections(server: NetServer, connectionsMax: number, stats: ClientLimitStats): void {
  if (connectionsMax <= 0) return;
  server.maxConnections = connectionsMax;
  server.on('drop', () => stats.refuse('connections'));
}

/**
 * grpc-go (etcdctl, Go clients) opens with an empty SETTINGS frame; nghttp2-based clients
 * (grpc-js, Node, curl) always send some settings. Only grpc-go dials with a scheme in
 * :authority, so only its connections pay for the HTTP/2 repair stream (see h2-authority.ts);
 * everyone else gets the native socket path.
 */
export function opensWithEmptySettings(head: Buffer): boolean {
  const at = http2Preface.length;
  return head.length >= at + 9 && head.readUIntBE(at, 3) === 0 && head[at + 3] === 0x4;
}

function sniff(
  socket: Socket,
  timeoutMs: number,
  decided: (protocol: 'http1' | 'http2', head: Buffer) => void,
): void {
  let head: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  const onData = (chunk: Buffer) => {
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
    const protocol = classifyPreface(head);
    if (protocol === 'undecided') return;
    // A client sends SETTINGS right after the preface without waiting: wait for its header.
    if (protocol === 'http2' && head.length < http2Preface.length + 9) return;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('close', onClose);
    socket.pause();
    socket.unshift(head);
    decided(protocol, head);
  };
  const onClose = () => clearTimeout(timer);
  socket.on('data', onData);
  socket.once('close', onClose);
}

// The credentials a call carries, as etcd reads them: a token in the gRPC metadata `token` (or
// `authorization`, and the gateway's Authorization header), and on a TLS connection whose client
// certificate was verified (--client-cert-auth) the certificate's common name.

import type { IncomingHttpHeaders } from 'node:http';
import type { Credentials } from '../services/backend.js';

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Set on a stream that wraps a connection's socket (h2-authority's rewriter): the socket itself,
 * whose TLS state the wrapper does not have.
 */
export const UNDERLYING_SOCKET: unique symbol = Symbol('concord.underlyingSocket');

interface MaybeTlsSocket {
  authorized?: unknown;
  /** node:http2 serves a stream that is not a net.Socket through a JSStreamSocket over it. */
  stream?: MaybeTlsSocket;
  getPeerCertificate?: () => { subject?: { CN?: string | string[] } } | null;
  [UNDERLYING_SOCKET]?: MaybeTlsSocket;
}

/**
 * The verified client certificate's common name, if the connection has a verified certificate; ''
 * when its subject has no CN (etcd then runs the request as the user "", who does not exist).
 * Duck-typed: an http2 session hands out its socket behind a proxy, for which instanceof
 * TLSSocket does not hold.
 */
export function peerCommonName(socket: unknown): string | undefined {
  if (socket === undefined || socket === null) return undefined;
  const candidate = socket as MaybeTlsSocket;
  const tls = candidate[UNDERLYING_SOCKET] ?? candidate.stream?.[UNDERLYING_SOCKET] ?? candidate;
  if (tls.authorized !== true || typeof tls.getPeerCertificate !== 'function') return undefined;
  const cn = tls.getPeerCertificate()?.subject?.CN;
  return (Array.isArray(cn) ? cn[0] : cn) ?? '';
}

/** A connection's certificate does not change: its CN is read once per HTTP/2 session or socket. */
const commonNames = new WeakMap<object, string | null>();

function cachedCommonName(connection: object | undefined, socket: () => unknown): string | undefined {
  if (connection === undefined) return peerCommonName(socket());
  let cn = commonNames.get(connection);
  if (cn === undefined) {
    cn = peerCommonName(socket()) ?? null;
    commonNames.set(connection, cn);
  }
  return cn ?? undefined;
}

/** `connection` (the HTTP/2 session, or the socket) keys the cached common name. */
export function credentialsOf(
  headers: IncomingHttpHeaders,
  connection: object | undefined,
  socket: () => unknown,
): Credentials {
  const token = headerValue(headers.token) ?? headerValue(headers.authorization);
  const commonName = cachedCommonName(connection, socket);
  if (token === undefined && commonName === undefined) return NO_CREDENTIALS;
  return { token, commonName };
}

export const NO_CREDENTIALS: Credentials = Object.freeze({});

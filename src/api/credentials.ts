// The credentials a call carries, as etcd reads them: a token in the gRPC metadata `token` (or
// `authorization`, and the gateway's Authorization header), and on a TLS connection whose client
// certificate was verified (--client-cert-auth) the certificate's common name.

import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Credentials } from '../server/backend.js';

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The verified client certificate's common name, if the connection has one. */
export function peerCommonName(socket: Socket | undefined | null): string | undefined {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const subject = socket.getPeerCertificate()?.subject as { CN?: string | string[] } | undefined;
  const cn = subject?.CN;
  return Array.isArray(cn) ? cn[0] : cn;
}

export function credentialsOf(headers: IncomingHttpHeaders, socket: Socket | undefined | null): Credentials {
  const token = headerValue(headers.token) ?? headerValue(headers.authorization);
  const commonName = peerCommonName(socket);
  if (token === undefined && commonName === undefined) return NO_CREDENTIALS;
  return { token, commonName };
}

export const NO_CREDENTIALS: Credentials = Object.freeze({});

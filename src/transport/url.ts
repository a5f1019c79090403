// Peer URLs as etcd writes them (--listen-peer-urls / --initial-advertise-peer-urls).

import { TransportError } from './errors.js';

export interface PeerAddress {
  host: string;
  port: number;
  /** https:// — the connection is mutual TLS. */
  tls: boolean;
}

/** etcd's conventional peer port, used when a URL names none. */
export const DEFAULT_PEER_PORT = 2380;

export function parsePeerUrl(url: string): PeerAddress {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new TransportError('BAD_PEER_URL', `invalid peer URL "${url}": expected http://HOST:PORT`, {
      cause,
    });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new TransportError(
      'BAD_PEER_URL',
      `peer URL "${url}": unsupported scheme ${parsed.protocol}, use http:// or https://`,
    );
  }
  if (parsed.pathname !== '/' && parsed.pathname !== '') {
    throw new TransportError('BAD_PEER_URL', `peer URL "${url}" must not have a path`);
  }
  // URL keeps IPv6 literals in brackets; sockets want them bare.
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new TransportError('BAD_PEER_URL', `peer URL "${url}" has no host`);
  const port = parsed.port === '' ? DEFAULT_PEER_PORT : Number(parsed.port);
  return { host, port, tls: parsed.protocol === 'https:' };
}

export function formatPeerUrl(address: PeerAddress): string {
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `${address.tls ? 'https' : 'http'}://${host}:${address.port}`;
}

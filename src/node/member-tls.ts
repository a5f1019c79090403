// A member's two TLS sides, from its flags: the client side (--cert-file, --key-file,
// --trusted-ca-file, --client-cert-auth, --auto-tls) and the peer side (the --peer-* forms).
// Each side's files are watched and reloaded when they change (see transport/tls-config.ts).

import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { PeerTlsOptions } from '../transport/peer-transport.js';
import { resolveTlsFiles } from '../transport/self-signed.js';
import { cipherList, TlsConfigError, TlsFileWatcher } from '../transport/tls-config.js';
import type { Logger } from '../util/logger.js';
import type { ServerConfig } from './config.js';

export { TlsConfigError } from '../transport/tls-config.js';

function watch(side: 'client' | 'peer', config: ServerConfig, log: Logger): TlsFileWatcher | undefined {
  const peer = side === 'peer';
  const urls = peer
    ? [...config.listenPeerUrls, ...config.initialAdvertisePeerUrls]
    : [...config.listenClientUrls, ...config.advertiseClientUrls];
  const files = resolveTlsFiles(
    peer ? config.peerTls : config.clientTls,
    join(config.dataDir, 'fixtures', side),
    urls,
    peer ? 'peer-' : '',
  );
  const listenUrls = peer ? config.listenPeerUrls : config.listenClientUrls;
  for (const url of listenUrls) {
    if (url.startsWith('https://') && files === undefined) {
      // etcd's text.
      throw new TlsConfigError(
        `TLS key/cert (--${peer ? 'peer-' : ''}cert-file, --${peer ? 'peer-' : ''}key-file) must be provided for ${side} url ${url} with HTTPS scheme`,
      );
    }
  }
  if (files === undefined) return undefined;
  if (!listenUrls.some((url) => url.startsWith('https://'))) {
    log.warn(`${side} URLs are http://: the ${side} TLS certificate is not used`, { urls: listenUrls });
  }
  const watcher = new TlsFileWatcher(files, {
    onReload: () => log.info(`reloaded the ${side} TLS certificate`, { certFile: files.certFile }),
    onError: (error) =>
      log.warn(`cannot reload the ${side} TLS certificate; keeping the old one`, { error: error.message }),
  });
  log.info(`${side} TLS`, {
    certFile: files.certFile,
    keyFile: files.keyFile,
    trustedCaFile: files.trustedCaFile,
    clientCertAuth: files.clientCertAuth,
    selfSigned: files.selfSigned,
  });
  return watcher;
}

/** The client side's certificate files, watched; undefined when the client port is plaintext. */
export function clientTlsWatcher(config: ServerConfig, log: Logger): TlsFileWatcher | undefined {
  return watch('client', config, log);
}

/** The peer side's certificate files, watched; undefined when peers talk plaintext. */
export function peerTlsWatcher(config: ServerConfig, log: Logger): TlsFileWatcher | undefined {
  const watcher = watch('peer', config, log);
  if (watcher === undefined) return undefined;
  if (!config.listenPeerUrls.some((url) => url.startsWith('https://'))) {
    watcher.close();
    return undefined;
  }
  return watcher;
}

/** What PeerTransport takes, from the watched files (call again after a reload). */
export function peerTransportTls(watcher: TlsFileWatcher): PeerTlsOptions {
  const { cert, key, ca } = watcher.current();
  const files = watcher.files;
  const verifyDialers = files.clientCertAuth || files.trustedCaFile !== '';
  return {
    cert,
    key,
    ca,
    requestCert: verifyDialers,
    insecureSkipVerify: files.selfSigned,
    minVersion: files.minVersion,
    ciphers: cipherList(files.cipherSuites),
  };
}

/**
 * GETs a JSON document from a peer URL (e.g. /members during a join); over TLS with this
 * member's peer certificate when the URL is https://.
 */
export function getPeerJson(
  url: string,
  tls: TlsFileWatcher | undefined,
  timeoutMs: number,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const secure = url.startsWith('https://');
    if (secure && tls === undefined) {
      reject(new TlsConfigError(`peer URL ${url} is https:// but no peer TLS is configured`));
      return;
    }
    const options = { timeout: timeoutMs, agent: false as const };
    const onResponse = (response: import('node:http').IncomingMessage) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        body += chunk;
      });
      response.on('end', () => {
        if (response.statusCode !== 200) reject(new Error(`GET ${url}: HTTP ${response.statusCode}`));
        else {
          try {
            resolve(JSON.parse(body));
          } catch (error) {
            reject(error);
          }
        }
      });
      response.on('error', reject);
    };
    const request =
      secure && tls !== undefined
        ? httpsRequest(url, { ...options, ...tls.clientOptions() }, onResponse)
        : httpRequest(url, options, onResponse);
    request.on('timeout', () => request.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    request.on('error', reject);
    request.end();
  });
}

/**
 * Channel credentials for calls a follower forwards to the leader's client URL (lease keep-alive,
 * member promotion): over TLS for https:// URLs, presenting this member's own client-side
 * certificate (it must then allow client authentication, as with etcd's own gateway). The files
 * are read when a channel is made, so a rotated certificate is used by the next one.
 */
export function leaderCredentials(config: ServerConfig): (url: string) => grpc.ChannelCredentials {
  return (url) => {
    if (!url.startsWith('https://')) return grpc.credentials.createInsecure();
    const files = resolveTlsFiles(
      config.clientTls,
      join(config.dataDir, 'fixtures', 'client'),
      [...config.listenClientUrls, ...config.advertiseClientUrls],
      '',
    );
    if (files === undefined) return grpc.credentials.createSsl();
    return grpc.credentials.createSsl(
      files.trustedCaFile === '' ? null : readFileSync(files.trustedCaFile),
      readFileSync(files.keyFile),
      readFileSync(files.certFile),
      { rejectUnauthorized: !files.selfSigned },
    );
  };
}

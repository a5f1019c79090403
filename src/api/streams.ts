// Pieces the gRPC server and the JSON gateway share for their server-streaming methods.

import { createHash } from 'node:crypto';
import type { EventEmitter } from 'node:events';
import type { EtcdBackend } from '../services/backend.js';
import { asBuffer, headerToWire } from './convert.js';

/**
 * The Snapshot stream's messages: the backend's chunks, then one more carrying the sha256 of
 * everything before it (etcd's trailer; etcdctl verifies it). Leaving the loop early (a client
 * gone) returns the backend's iterator, so it can release its read transaction.
 */
export async function* snapshotMessages(backend: EtcdBackend): AsyncGenerator<object> {
  const { header, chunks } = await backend.snapshot();
  const wireHeader = headerToWire(header);
  const digest = createHash('sha256');
  for await (const chunk of chunks) {
    digest.update(chunk.blob);
    yield { header: wireHeader, remaining_bytes: chunk.remainingBytes, blob: asBuffer(chunk.blob) };
  }
  yield { header: wireHeader, remaining_bytes: 0, blob: digest.digest() };
}

/**
 * Resolves once a stream that refused a write can take more, or is gone ('close', 'cancelled',
 * 'error'): waiting for 'drain' alone would hang forever on a client that disconnected.
 */
export function writableOrGone(stream: EventEmitter): Promise<void> {
  const events = ['drain', 'close', 'cancelled', 'error', 'finish'];
  return new Promise((resolve) => {
    const done = () => {
      for (const event of events) stream.off(event, done);
      resolve();
    };
    for (const event of events) stream.on(event, done);
  });
}

// Encryption at rest on a node: the key ring, the cluster's switch to a new key (an applied
// encryptionKey entry), and the background pass that then re-seals what older keys still seal:
// the keyspace's records, the WAL segments (rolled over, then released by a snapshot) and the
// snapshot files. The admin calls behind `concordctl encryption` are served here too.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Keyspace } from '../mvcc/keyspace.js';
import { ENCRYPTION_KEY_META_NAME, type GroupReplica } from '../replica/group-replica.js';
import { formatId } from '../replica/ids.js';
import type { EncryptionKeys } from '../storage/encryption.js';
import type { FailStopOperation } from '../storage/fail-stop.js';
import type { Wal } from '../storage/wal.js';
import type { Logger } from '../util/logger.js';

/** How often the background pass takes a step, and its size. */
export const REENCRYPT_STEP_MS = 50;
const REENCRYPT_RECORDS_PER_STEP = 2000;
const ROTATE_REQUEST_BYTES_MAX = 4096;

/** What the pass works on and reports to: the node's. */
export interface KeyRotationHost {
  readonly memberId: number;
  readonly keyspace: Keyspace;
  readonly wal: Wal;
  readonly replica: GroupReplica;
  readonly log: Logger;
  isStopped(): boolean;
  failStop(operation: FailStopOperation, cause: unknown): void;
}

export class KeyRotation {
  /**
   * The background pass after a key rotation: 'keyspace' re-seals the stored records in steps;
   * 'wal' starts a new WAL segment (every entry up to walLastIndex is in older ones); 'snapshot'
   * takes a snapshot at or above walLastIndex, which deletes those segments and the snapshot files
   * written under older keys; then it is over (undefined).
   */
  private rotation:
    | { keyId: string; phase: 'keyspace' | 'wal' | 'snapshot'; walLastIndex: number; noopProposed: boolean }
    | undefined;
  private stepRunning = false;

  /** `keys`: the key ring (undefined without --encryption-key-file). */
  constructor(
    private readonly keys: EncryptionKeys | undefined,
    private readonly host: KeyRotationHost,
  ) {}

  /** A snapshot from the leader replaced the keyspace: adopt its agreed key, re-seal what is older. */
  onSnapshotInstalled(): void {
    if (this.keys === undefined) return;
    adoptAgreedKey(this.host.keyspace, this.keys);
    // The leader's copy may hold records sealed under an older key: re-seal them here too.
    this.resumeRotation();
  }

  /**
   * `concordctl encryption rotate-key ID`: this member reads its key file again and, if it holds
   * `keyId`, proposes the switch; every member switches when it applies the entry (and stops if
   * its own key file lacks the key: add it to every member's file first).
   */
  async rotateEncryptionKey(keyId: string): Promise<{ activeKeyId: string }> {
    const keys = this.keys;
    if (keys === undefined)
      throw new Error('encryption at rest is off on this member (no --encryption-key-file)');
    keys.reload();
    keys.require(keyId);
    const outcome = await this.host.replica.propose({ type: 'encryptionKey', keyId });
    if (outcome.status === 'error') throw outcome.error;
    return { activeKeyId: keys.activeKeyId() };
  }

  /** What `concordctl encryption status` shows for this member. */
  encryptionStatus(): Record<string, unknown> {
    const keys = this.keys;
    if (keys === undefined) return { memberId: formatId(this.host.memberId), enabled: false };
    const keyspace = Object.fromEntries(this.host.keyspace.encryptionKeyUse());
    const wal = this.host.wal.keyIdsInUse();
    const inUse = [...new Set([...Object.keys(keyspace), ...wal, keys.activeKeyId()])].sort();
    return {
      memberId: formatId(this.host.memberId),
      enabled: true,
      activeKeyId: keys.activeKeyId(),
      keyFileIds: keys.keyIds(),
      keyIdsInUse: inUse,
      keyspaceRecordsByKeyId: keyspace,
      walKeyIds: wal,
      reencryption: this.rotation?.phase ?? 'idle',
    };
  }

  /**
   * The admin calls behind `concordctl encryption` on the client URL (a Concord extension, JSON):
   * GET /concord/v1/encryption/status, POST /concord/v1/encryption/rotate-key {"keyId": "…"}.
   */
  async encryptionRoutes(request: IncomingMessage, response: ServerResponse, path: string): Promise<boolean> {
    const reply = (status: number, body: unknown): true => {
      response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      return true;
    };
    if (path === '/concord/v1/encryption/status' && request.method === 'GET') {
      return reply(200, this.encryptionStatus());
    }
    if (path !== '/concord/v1/encryption/rotate-key' || request.method !== 'POST') return false;
    let body = '';
    for await (const chunk of request) {
      body += chunk;
      if (body.length > ROTATE_REQUEST_BYTES_MAX) return reply(400, { error: 'request too large' });
    }
    let keyId: unknown;
    try {
      keyId = (JSON.parse(body || '{}') as { keyId?: unknown }).keyId;
    } catch {
      return reply(400, { error: 'the body must be JSON: {"keyId": "<id>"}' });
    }
    if (typeof keyId !== 'string' || keyId === '') return reply(400, { error: 'keyId is required' });
    try {
      return reply(200, await this.rotateEncryptionKey(keyId));
    } catch (error) {
      return reply(400, { error: (error as Error).message });
    }
  }

  /** Applied an encryptionKey entry: seal everything new with `keyId`, re-seal the rest in the background. */
  switchEncryptionKey(keyId: string): void {
    const keys = this.keys;
    if (keys === undefined) {
      this.host.log.warn(
        'the cluster switched its encryption key, but this member runs without encryption at rest',
        {
          keyId,
        },
      );
      return;
    }
    try {
      keys.reload();
      keys.setActive(keyId);
    } catch (error) {
      this.host.failStop('encryption', error);
      return;
    }
    this.host.log.info('encryption key switched; re-encrypting older data in the background', { keyId });
    this.host.keyspace.restartReencryption();
    this.rotation = { keyId, phase: 'keyspace', walLastIndex: 0, noopProposed: false };
  }

  /** After a start or an installed snapshot: finish re-encrypting whatever an older key still seals. */
  resumeRotation(): void {
    const keys = this.keys;
    if (keys === undefined) return;
    const active = keys.activeKeyId();
    const stale =
      [...this.host.keyspace.encryptionKeyUse().keys()].some((id) => id !== active) ||
      this.host.wal.keyIdsInUse().some((id) => id !== active);
    if (!stale) return;
    this.host.keyspace.restartReencryption();
    this.rotation = { keyId: active, phase: 'keyspace', walLastIndex: 0, noopProposed: false };
  }

  /** One step of the pass after a rotation (a timer drives it; one step at a time). */
  async rotationStep(): Promise<void> {
    const rotation = this.rotation;
    if (rotation === undefined || this.host.isStopped() || this.stepRunning) return;
    this.stepRunning = true;
    try {
      if (rotation.phase === 'keyspace') {
        const more = await this.host.replica.exclusive(async () =>
          this.host.keyspace.reencryptStep(REENCRYPT_RECORDS_PER_STEP),
        );
        if (!more) rotation.phase = 'wal';
        return;
      }
      if (rotation.phase === 'wal') {
        // Every entry sealed under an older key is at or below lastIndex, in a segment that the
        // rollover seals; a snapshot at or above it lets the WAL delete those segments.
        rotation.walLastIndex = this.host.replica.lastIndex();
        await this.host.wal.rolloverNow();
        rotation.phase = 'snapshot';
        return;
      }
      const applied = this.host.keyspace.appliedIndex();
      if (applied <= this.host.replica.snapshotLogIndex()) {
        // Nothing applied since the last snapshot (taken before the pass): an empty entry makes one possible.
        if (!rotation.noopProposed) void this.host.replica.propose({ type: 'noop' }).catch(() => undefined);
        rotation.noopProposed = true;
        return;
      }
      if (applied < rotation.walLastIndex) return;
      if (!(await this.host.replica.takeSnapshot(true))) return;
      if (this.rotation !== rotation) return;
      this.rotation = undefined;
      this.host.log.info('re-encryption finished', {
        keyId: rotation.keyId,
        walKeyIds: this.host.wal.keyIdsInUse(),
      });
    } catch (error) {
      this.host.failStop('encryption', error);
    } finally {
      this.stepRunning = false;
    }
  }
}

/** Makes the key id the cluster agreed on last (kept in the keyspace's meta) the active one. */
export function adoptAgreedKey(keyspace: Keyspace, keys: EncryptionKeys): void {
  const agreed = keyspace.getMeta(ENCRYPTION_KEY_META_NAME);
  if (agreed !== undefined) keys.setActive(Buffer.from(agreed).toString());
}

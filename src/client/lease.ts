// Keeping a lease alive: a LeaseKeepAlive stream to one endpoint, a renewal every TTL/3, and
// failover to another endpoint when the stream breaks. The lease is declared lost (onLoss, once)
// when the server says it no longer exists (TTL <= 0) or when no renewal succeeded before the
// lease's expiry as last confirmed; from then on the caller must assume others may own what
// the lease protected.

import type * as grpc from '@grpc/grpc-js';
import type { Client } from './client.js';
import { fromGrpcError, LeaseLostError } from './errors.js';
import { big } from './types.js';

export interface KeepAliveOptions {
  /** The lease's TTL; looked up with LeaseTimeToLive when absent. */
  ttlSeconds?: number;
  onLoss?: (error: LeaseLostError) => void;
}

const renewalsPerTtl = 3;
const renewIntervalMinMs = 100;

export class LeaseKeepAlive {
  private closedFlag = false;
  private lostError: LeaseLostError | undefined;
  private stream: grpc.ClientDuplexStream<object, object> | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private ttlMs = 0;
  /** Local time by which the lease expires unless renewed (from the last confirmed renewal). */
  private expiresAtMs = 0;
  private lastSentAtMs = 0;
  private readonly lostPromise: Promise<LeaseLostError>;
  private resolveLost: (error: LeaseLostError) => void = () => {};
  /** Successful renewals so far. */
  renewals = 0;

  constructor(
    private readonly client: Client,
    readonly id: bigint,
    private readonly options: KeepAliveOptions,
  ) {
    this.lostPromise = new Promise((resolve) => {
      this.resolveLost = resolve;
    });
    void this.start();
  }

  /** Set once the lease is lost. */
  get lost(): LeaseLostError | undefined {
    return this.lostError;
  }

  /** Resolves when the lease is lost (never, if it is closed first). */
  whenLost(): Promise<LeaseLostError> {
    return this.lostPromise;
  }

  get ttlSeconds(): number {
    return this.ttlMs / 1000;
  }

  private async start(): Promise<void> {
    try {
      let ttlSeconds = this.options.ttlSeconds;
      if (ttlSeconds === undefined) {
        const info = await this.client.leaseTimeToLive(this.id);
        if (info.ttl <= 0n) return this.lose('expired');
        ttlSeconds = Number(info.grantedTtl);
      }
      this.ttlMs = ttlSeconds * 1000;
      this.setExpiry(Date.now() + this.ttlMs);
      await this.run();
    } catch (error) {
      if (!this.closedFlag && this.lostError === undefined) this.lose('unrenewable', error);
    }
  }

  private setExpiry(atMs: number): void {
    this.expiresAtMs = atMs;
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => this.lose('unrenewable'), Math.max(0, atMs - Date.now()));
    this.expiryTimer.unref();
  }

  private async run(): Promise<void> {
    const tried = new Set<string>();
    for (let attempt = 1; !this.closedFlag && this.lostError === undefined; attempt++) {
      if (tried.size >= this.client.pool.endpoints.length) tried.clear();
      const endpoint = this.client.pool.leader(tried) ?? this.client.pool.pick(undefined, tried);
      try {
        await this.session(endpoint.address, () => {
          attempt = 0;
        });
      } catch (raw) {
        if (this.closedFlag || this.lostError !== undefined) return;
        const error = fromGrpcError(raw);
        if (error.code === 'lease-not-found') return this.lose('expired');
        this.client.pool.recordFailure(endpoint);
        tried.add(endpoint.address);
        await new Promise((resolve) => setTimeout(resolve, this.client.backoffMs(Math.max(attempt, 1))));
      }
    }
  }

  private async session(endpoint: string, onRenewed: () => void): Promise<void> {
    const connection = this.client.connection(endpoint);
    await connection.ready(Date.now() + this.client.dialTimeoutMs);
    const stream = connection.duplex('Lease', 'LeaseKeepAlive', await this.client.metadata());
    this.stream = stream;
    const intervalMs = Math.max(renewIntervalMinMs, Math.floor(this.ttlMs / renewalsPerTtl));
    await new Promise<void>((resolve, reject) => {
      const send = () => {
        this.lastSentAtMs = Date.now();
        stream.write({ ID: this.id.toString() });
      };
      stream.on('data', (response: { TTL: string }) => {
        const ttl = big(response.TTL);
        if (ttl <= 0n) {
          this.lose('expired');
          resolve();
          return;
        }
        this.renewals++;
        onRenewed();
        this.setExpiry(this.lastSentAtMs + Number(ttl) * 1000);
      });
      stream.on('error', (error) => (this.closedFlag ? resolve() : reject(error)));
      stream.on('end', () => (this.closedFlag ? resolve() : reject(new Error('keep-alive stream ended'))));
      send();
      clearInterval(this.renewTimer);
      this.renewTimer = setInterval(send, intervalMs);
    }).finally(() => {
      clearInterval(this.renewTimer);
      stream.cancel();
    });
  }

  private lose(reason: LeaseLostError['reason'], _cause?: unknown): void {
    if (this.lostError !== undefined || this.closedFlag) return;
    this.lostError = new LeaseLostError(this.id, reason);
    this.stop();
    this.resolveLost(this.lostError);
    this.options.onLoss?.(this.lostError);
  }

  private stop(): void {
    clearInterval(this.renewTimer);
    clearTimeout(this.expiryTimer);
    this.stream?.cancel();
    this.client.disown(this);
  }

  /** Stops renewing; the lease then expires after its TTL unless revoked. */
  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.stop();
  }

  /** Stops renewing and revokes the lease (its keys are deleted at once). */
  async revoke(): Promise<void> {
    this.close();
    await this.client.leaseRevoke(this.id).catch((error: unknown) => {
      const typed = fromGrpcError(error);
      if (typed.code !== 'lease-not-found') throw typed;
    });
  }

  get expiresAt(): number {
    return this.expiresAtMs;
  }
}

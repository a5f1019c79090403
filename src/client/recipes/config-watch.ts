// Configuration under a prefix, kept current: one get, then a watch from the next revision;
// after each batch of changes the callback gets the whole configuration (key relative to the
// prefix → value). If the watch falls behind a compaction it re-reads and carries on.

import type { Client } from '../client.js';
import { CompactedError, type ConcordError } from '../errors.js';
import type { Watcher } from '../watch.js';

export type ConfigSnapshot = ReadonlyMap<string, string>;

export interface ConfigWatchOptions {
  onChange: (config: ConfigSnapshot, revision: bigint) => void;
  onError?: (error: ConcordError) => void;
}

export class ConfigWatch {
  private readonly config = new Map<string, string>();
  private watcher: Watcher | undefined;
  private closedFlag = false;
  private revisionValue = 0n;

  constructor(
    private readonly client: Client,
    readonly prefix: string,
    private readonly options: ConfigWatchOptions,
  ) {}

  get revision(): bigint {
    return this.revisionValue;
  }

  get current(): ConfigSnapshot {
    return new Map(this.config);
  }

  /** Loads the configuration (also passed to onChange) and starts following it. */
  async start(): Promise<ConfigSnapshot> {
    const fromRevision = await this.load();
    void this.follow(fromRevision);
    return this.current;
  }

  private async load(): Promise<bigint> {
    const result = await this.client.get(this.prefix, { prefix: true });
    this.config.clear();
    for (const kv of result.kvs)
      this.config.set(kv.key.toString('utf8').slice(this.prefix.length), kv.value.toString('utf8'));
    this.revisionValue = result.header.revision;
    this.options.onChange(this.current, this.revisionValue);
    return result.header.revision + 1n;
  }

  private async follow(fromRevision: bigint): Promise<void> {
    let from = fromRevision;
    while (!this.closedFlag) {
      const watcher = this.client.watch(this.prefix, { prefix: true, fromRevision: from });
      this.watcher = watcher;
      try {
        for await (const batch of watcher.batches()) {
          for (const event of batch.events) {
            const name = event.kv.key.toString('utf8').slice(this.prefix.length);
            if (event.type === 'put') this.config.set(name, event.kv.value.toString('utf8'));
            else this.config.delete(name);
          }
          this.revisionValue = batch.revision;
          this.options.onChange(this.current, batch.revision);
        }
        return;
      } catch (error) {
        if (this.closedFlag) return;
        if (!(error instanceof CompactedError)) {
          this.options.onError?.(error as ConcordError);
          return;
        }
        from = await this.load();
      }
    }
  }

  close(): void {
    this.closedFlag = true;
    this.watcher?.close();
  }
}

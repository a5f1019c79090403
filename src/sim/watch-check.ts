// A watch over the whole keyspace merged from every shard group, as a cross-shard Watch releases
// events (issue 15): each group's events are buffered as they are first applied, and released in
// revision order up to the minimum resolved revision of the groups (everything at or below a
// group's resolved revision is applied there). A split adds a group whose resolved revision starts
// at the revision the split happened at; the events of the keys it took stay with the group that
// applied them, so a re-subscription neither loses nor repeats one. Checked as it runs:
//   - `resolved-regressed`: a group's resolved revision, as its leaders report it, never goes back
//     (a report from a leader of an older term than one already heard is ignored, as a watcher
//     ignores a deposed leader);
//   - `watch-gap`: an event is applied at or below a revision the watch has already released;
// and at the end, `watch-gap` / `watch-repeat`: the released stream is exactly the global history
// (every shard's key histories) up to the released revision, each event once.

import { InvariantViolation } from './errors.js';
import type { ShardStateMachine, WriteOp } from './shard-app.js';

export interface WatchEvent {
  readonly revision: number;
  readonly key: string;
  readonly op: WriteOp;
  readonly write: number;
}

export interface MergedWatchOptions {
  /** Test only: release up to the highest resolved revision of the groups, not the lowest. */
  unsafeReleaseAtMax?: boolean;
}

export class MergedWatch {
  /** Group → its resolved revision as last reported. */
  private readonly resolved = new Map<number, number>();
  /** Group → the term of the leader that reported last. */
  private readonly resolvedTerm = new Map<number, number>();
  /** Group → events applied there, not yet released. */
  private readonly buffered = new Map<number, WatchEvent[]>();
  /** Group → write ids already buffered (each write applies once per group; replicas repeat it). */
  private readonly seen = new Map<number, Set<number>>();
  readonly stream: WatchEvent[] = [];
  /** Every event at or below this has been released. */
  released = 0;

  constructor(private readonly options: MergedWatchOptions = {}) {}

  /** A shard group joins (at the start, or split off at `revision`). */
  addGroup(group: number, revision: number): void {
    if (this.resolved.has(group)) return;
    this.resolved.set(group, revision);
    this.buffered.set(group, []);
    this.seen.set(group, new Set());
  }

  /** A replica of `group` applied `write` at `revision`, writing these keys. */
  observeApplied(
    group: number,
    write: number,
    revision: number,
    ops: readonly { key: string; op: WriteOp }[],
  ): void {
    const seen = this.seen.get(group)!;
    if (seen.has(write)) return;
    seen.add(write);
    if (revision <= this.released) {
      throw new InvariantViolation(
        'watch-gap',
        `shard ${group} applied write ${write} at revision ${revision}, after the watch released up to ${this.released}`,
      );
    }
    for (const { key, op } of ops) this.buffered.get(group)!.push({ revision, key, op, write });
  }

  /** `group`'s leader in `term` reports its resolved revision. */
  observeResolved(group: number, term: number, revision: number): void {
    if (term < (this.resolvedTerm.get(group) ?? 0)) return;
    this.resolvedTerm.set(group, term);
    const before = this.resolved.get(group)!;
    if (revision < before) {
      throw new InvariantViolation(
        'resolved-regressed',
        `shard ${group}'s resolved revision went from ${before} back to ${revision}`,
      );
    }
    this.resolved.set(group, revision);
  }

  /** Releases every buffered event up to the groups' minimum resolved revision, in revision order. */
  release(): void {
    const values = [...this.resolved.values()];
    const upTo = this.options.unsafeReleaseAtMax ? Math.max(...values) : Math.min(...values);
    if (upTo <= this.released) return;
    const out: WatchEvent[] = [];
    for (const [group, events] of this.buffered) {
      const kept: WatchEvent[] = [];
      for (const event of events) (event.revision <= upTo ? out : kept).push(event);
      this.buffered.set(group, kept);
    }
    out.sort((a, b) => a.revision - b.revision || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    this.stream.push(...out);
    this.released = upTo;
  }

  /** The highest revision any group has applied a write at (the watch must reach it). */
  get appliedMax(): number {
    let max = 0;
    for (const events of this.buffered.values()) for (const e of events) max = Math.max(max, e.revision);
    return Math.max(max, this.stream.at(-1)?.revision ?? 0);
  }

  /** End of run: the stream equals the final shards' key histories up to `released`. */
  checkStream(shards: readonly ShardStateMachine[]): void {
    const history: WatchEvent[] = [];
    for (const state of shards)
      for (const [key, versions] of state.history)
        for (const v of versions)
          if (v.revision <= this.released)
            history.push({ revision: v.revision, key, op: v.op, write: v.write });
    const id = (e: WatchEvent) => `${e.revision}/${e.key}/${e.op}/${e.write}`;
    const streamed = new Set<string>();
    for (const event of this.stream) {
      if (streamed.has(id(event)))
        throw new InvariantViolation('watch-repeat', `the watch released ${id(event)} twice`);
      streamed.add(id(event));
    }
    const expected = new Set(history.map(id));
    for (const event of history)
      if (!streamed.has(id(event)))
        throw new InvariantViolation(
          'watch-gap',
          `the watch never released ${id(event)} (released up to ${this.released})`,
        );
    for (const event of this.stream)
      if (!expected.has(id(event)))
        throw new InvariantViolation('watch-repeat', `the watch released ${id(event)}, which no shard holds`);
  }
}

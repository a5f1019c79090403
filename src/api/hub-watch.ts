// Adapts the keyspace's pull-based WatchHub (take() when signalled) to the push-based
// BackendWatcher the API layer consumes. A server backend can implement EtcdBackend.watch with it.

import type { Watcher, WatchHub } from '../mvcc/watch.js';
import type { BackendWatcher, WatchCreate, WatchListener } from './backend.js';

/** Batches handed over per event-loop turn before yielding, so one busy watcher cannot starve I/O. */
export const watchBatchesPerTurnMax = 16;

export function watchFromHub(hub: WatchHub, request: WatchCreate, listener: WatchListener): BackendWatcher {
  let scheduled = false;
  let watcher: Watcher | undefined;
  const drain = () => {
    scheduled = false;
    if (watcher === undefined || watcher.state === 'canceled') return;
    for (let i = 0; i < watchBatchesPerTurnMax; i++) {
      const batch = watcher.take();
      if (batch === undefined) return;
      if (batch.kind === 'compacted') return listener.onCompacted(batch.compactRevision);
      listener.onEvents(batch.events, batch.revision);
    }
    schedule();
  };
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(drain);
  };
  // Throws CompactedError synchronously for a start revision below the compaction point.
  watcher = hub.watch(
    {
      key: request.key,
      rangeEnd: request.rangeEnd,
      startRevision: request.startRevision,
      prevKv: request.prevKv,
    },
    schedule,
  );
  const created = watcher;
  return {
    get synced() {
      return created.state === 'synced';
    },
    cancel: () => created.cancel(),
  };
}

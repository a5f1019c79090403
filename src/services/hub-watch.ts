// Adapts the keyspace's pull-based WatchHub (take() when signalled) to the push-based
// BackendWatcher the API layer consumes. A server backend can implement EtcdBackend.watch with it.
//
// Flow control: batches are taken only while the listener is ready (its stream can take more).
// When it is not, we stop calling take(); the hub watcher's bounded buffer then fills, it turns
// unsynced and later re-reads the missed revisions from history. So a slow client costs a
// bounded buffer in the hub, not an ever-growing queue of responses in this process, and no
// event is lost or repeated. resume() restarts taking.

import type { Watcher, WatchHub } from '../mvcc/watch.js';
import type { BackendWatcher, WatchCreate, WatchListener } from './backend.js';

/** Batches handed over per event-loop turn before yielding, so one busy watcher cannot starve I/O. */
export const watchBatchesPerTurnMax = 16;

/**
 * Drains due next turn, in the order they were scheduled. One commit readies every watcher of
 * its key at once: one setImmediate for all of them instead of one each. Each drain is scheduled
 * at most once at a time (its own `scheduled` flag), so this holds at most one entry per watcher.
 */
let dueDrains: Array<() => void> = [];

function runDueDrains(): void {
  const due = dueDrains;
  dueDrains = [];
  for (const drain of due) {
    try {
      drain();
    } catch (error) {
      // One failing watcher must not strand the others; the error still surfaces as uncaught.
      queueMicrotask(() => {
        throw error;
      });
    }
  }
}

function scheduleDrain(drain: () => void): void {
  dueDrains.push(drain);
  if (dueDrains.length === 1) setImmediate(afterResponses);
}

/**
 * One more turn before the drains: a unary response written in the turn that applied the write
 * (the put itself) leaves in two HTTP/2 writes, headers and data next turn, the trailers (which
 * complete the call) the turn after, behind that turn's immediates. Draining a fan-out there
 * would hold the writer's put back by the whole fan-out; one turn later it does not.
 */
function afterResponses(): void {
  setImmediate(runDueDrains);
}

export function watchFromHub(hub: WatchHub, request: WatchCreate, listener: WatchListener): BackendWatcher {
  let scheduled = false;
  let paused = false;
  let watcher: Watcher | undefined;
  const drain = () => {
    scheduled = false;
    if (watcher === undefined || watcher.state === 'canceled') return;
    for (let i = 0; i < watchBatchesPerTurnMax; i++) {
      if (listener.ready?.() === false) {
        paused = true;
        return;
      }
      const batch = watcher.take();
      if (batch === undefined) return;
      if (batch.kind === 'compacted') return listener.onCompacted(batch.compactRevision);
      listener.onEvents(batch.events, batch.revision);
    }
    schedule();
  };
  const schedule = () => {
    // While paused the hub may signal; only resume() restarts the drain.
    if (scheduled || paused) return;
    scheduled = true;
    scheduleDrain(drain);
  };
  // Throws CompactedError synchronously for a start revision below the compaction point.
  watcher = hub.watch(
    {
      key: request.key,
      rangeEnd: request.rangeEnd,
      startRevision: request.startRevision,
      prevKv: request.prevKv,
      filters: request.filters ?? [],
    },
    schedule,
  );
  const created = watcher;
  return {
    get synced() {
      return created.state === 'synced';
    },
    cancel: () => created.cancel(),
    resume: () => {
      if (!paused) return;
      paused = false;
      schedule();
    },
  };
}

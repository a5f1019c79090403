// Log lines for refusals by the client port's limits (--max-client-connections,
// --max-watchers-per-stream). A misbehaving client may be refused thousands of times a second,
// so each limit logs its first refusal, then at most one line per interval with the count since.

import type { ClientLimit } from '../api/limit-stats.js';
import type { Logger } from '../util/logger.js';

const limitFlags: Record<ClientLimit, string> = {
  connections: '--max-client-connections',
  'watchers-per-stream': '--max-watchers-per-stream',
};

export function limitRefusalLogger(
  log: Logger,
  intervalMs = 10_000,
  now: () => number = Date.now,
): (limit: ClientLimit) => void {
  const last = new Map<ClientLimit, { atMs: number; unlogged: number }>();
  return (limit) => {
    const state = last.get(limit);
    const at = now();
    if (state !== undefined && at - state.atMs < intervalMs) {
      state.unlogged++;
      return;
    }
    const refused = (state?.unlogged ?? 0) + 1;
    last.set(limit, { atMs: at, unlogged: 0 });
    log.warn('client limit refused a request; see concord_client_limit_refusals_total', {
      limit: limitFlags[limit],
      refused,
    });
  };
}

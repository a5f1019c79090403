// What the client port's protective limits refused, for /metrics
// (concord_client_limit_refusals_total) and for the member's log. The HTTP/2 stream limit
// (--max-concurrent-streams) is enforced by nghttp2 itself and is not counted here.

/** --max-client-connections and --max-watchers-per-stream (Concord extensions). */
export type ClientLimit = 'connections' | 'watchers-per-stream';

export const clientLimits: readonly ClientLimit[] = ['connections', 'watchers-per-stream'];

export class ClientLimitStats {
  /** Refusals since start, by limit. */
  readonly refused: Record<ClientLimit, number> = { connections: 0, 'watchers-per-stream': 0 };

  constructor(private readonly onRefused: (limit: ClientLimit) => void = () => {}) {}

  refuse(limit: ClientLimit): void {
    this.refused[limit]++;
    this.onRefused(limit);
  }
}

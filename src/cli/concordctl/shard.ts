// `shard list`: the shard map as the metadata group (group 0) holds it, read over HTTP(S) JSON
// from a member's client URL (GET /concord/v1/shard/list, node/shard-admin.ts). The first
// endpoint that answers is used; the map is that member's applied copy.
// `shard split KEY`: POST /v3/concord/shard/split on the JSON gateway (concordpb.Shard/Split);
// any member takes it and passes it to the metadata group's leader.

import { UsageError } from './args.js';
import { type Command, CommandError } from './context.js';
import { call } from './encryption.js';
import { humanBytes, renderTable } from './output.js';

interface Row {
  id: number;
  start: string;
  end: string;
  epoch: number;
  confEpoch: number;
  leader: string;
  replicas: Array<{ id: string; role: string }>;
  sizeBytes: number;
  qps: number;
}

export const list: Command = async (ctx) => {
  if (ctx.operands.length > 0) throw new UsageError('shard list takes no arguments');
  let lastError = 'no endpoint answered';
  for (const endpoint of ctx.endpoints) {
    let reply: Awaited<ReturnType<typeof call>>;
    try {
      reply = await call(ctx, endpoint, 'GET', '/concord/v1/shard/list');
    } catch (error) {
      lastError = `${endpoint}: ${(error as Error).message}`;
      continue;
    }
    if (reply.status !== 200) {
      lastError = `${endpoint}: HTTP ${reply.status}`;
      continue;
    }
    const shards = (reply.body.shards ?? []) as Row[];
    if (ctx.writeOut === 'json') {
      ctx.io.out(JSON.stringify(reply.body));
      return 0;
    }
    const rows = shards.map((s) => [
      String(s.id),
      `[${keyText(s.start, '""')}, ${keyText(s.end, '+inf')})`,
      String(s.epoch),
      s.leader === '' ? '-' : s.leader,
      s.replicas.map((r) => (r.role === 'learner' ? `${r.id}(learner)` : r.id)).join(','),
      humanBytes(BigInt(s.sizeBytes)),
      String(s.qps),
    ]);
    if (ctx.writeOut === 'table') {
      ctx.io.out(renderTable(['ID', 'RANGE', 'EPOCH', 'LEADER', 'REPLICAS', 'SIZE', 'QPS'], rows));
    } else {
      for (const row of rows) ctx.io.out(row.join(', '));
    }
    if (shards.length === 0)
      ctx.io.out('(no shard map yet: the metadata group has not applied its initial state)');
    return 0;
  }
  throw new CommandError(`shard list: ${lastError}`);
};

export const split: Command = async (ctx) => {
  if (ctx.operands.length !== 1) throw new UsageError('shard split takes one argument: KEY');
  const key = Buffer.from(ctx.operands[0]!, 'utf8');
  let lastError = 'no endpoint answered';
  for (const endpoint of ctx.endpoints) {
    let reply: Awaited<ReturnType<typeof call>>;
    try {
      reply = await call(ctx, endpoint, 'POST', '/v3/concord/shard/split', { key: key.toString('base64') });
    } catch (error) {
      lastError = `${endpoint}: ${(error as Error).message}`;
      continue;
    }
    if (reply.status !== 200) {
      // The gateway's error body ({error, code, message}): the server's refusal, not a transport problem.
      const message = (reply.body.message ?? reply.body.error ?? `HTTP ${reply.status}`) as string;
      throw new CommandError(`shard split: ${message}`);
    }
    if (ctx.writeOut === 'json') {
      ctx.io.out(JSON.stringify(reply.body));
      return 0;
    }
    const left = reply.body.left as WireShard;
    const right = reply.body.right as WireShard;
    ctx.io.out(
      `split shard ${left.ID} at ${keyText(key.toString('base64'), '""')}: ` +
        `shard ${left.ID} ${rangeText(left)} epoch ${left.epoch}, shard ${right.ID} ${rangeText(right)} epoch ${right.epoch}`,
    );
    return 0;
  }
  throw new CommandError(`shard split: ${lastError}`);
};

/** A concordpb.ShardInfo as the JSON gateway writes it (uint64 as strings, bytes as base64). */
interface WireShard {
  ID: string;
  start?: string;
  end?: string;
  epoch: string;
}

function rangeText(shard: WireShard): string {
  return `[${keyText(shard.start ?? '', '""')}, ${keyText(shard.end ?? '', '+inf')})`;
}

/** A key for people: its text in quotes when printable, else hex; `empty` for the empty key. */
function keyText(base64: string, empty: string): string {
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length === 0) return empty;
  const printable = bytes.every((b) => b >= 0x20 && b < 0x7f);
  return printable ? JSON.stringify(bytes.toString('latin1')) : `0x${bytes.toString('hex')}`;
}

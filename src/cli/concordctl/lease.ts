// lease grant / revoke / timetolive / list / keep-alive.

import { flagBool, UsageError } from './args.js';
import { aborted, type Command, type CommandContext } from './context.js';
import { headerJson, hex, toJson } from './output.js';

/** etcdctl prints lease IDs as %016x. */
function leaseHex(id: bigint): string {
  return hex(id).padStart(16, '0');
}

function leaseOperand(ctx: CommandContext, usage: string): bigint {
  const [text] = ctx.operands;
  if (text === undefined || ctx.operands.length !== 1) throw new UsageError(usage);
  if (!/^[0-9a-fA-F]+$/.test(text)) throw new UsageError(`bad lease ID arg (${text}), expecting ID in Hex`);
  return BigInt(`0x${text}`);
}

export const leaseGrant: Command = async (ctx) => {
  const [ttlText] = ctx.operands;
  if (ttlText === undefined || !/^\d+$/.test(ttlText))
    throw new UsageError('lease grant command needs TTL argument');
  const granted = await ctx.client.leaseGrant(Number(ttlText));
  if (ctx.writeOut === 'json')
    ctx.io.out(toJson({ ...headerJson(granted.header), id: granted.id, ttl: granted.ttl }));
  else ctx.io.out(`lease ${leaseHex(granted.id)} granted with TTL(${granted.ttl}s)`);
  return 0;
};

export const leaseRevoke: Command = async (ctx) => {
  const id = leaseOperand(ctx, 'lease revoke command needs 1 argument');
  const header = await ctx.client.leaseRevoke(id);
  if (ctx.writeOut === 'json') ctx.io.out(toJson({ header: headerJson(header) }));
  else ctx.io.out(`lease ${leaseHex(id)} revoked`);
  return 0;
};

export const leaseTimeToLive: Command = async (ctx) => {
  const id = leaseOperand(ctx, 'lease timetolive command needs lease ID as argument');
  const withKeys = flagBool(ctx.args, 'keys');
  const info = await ctx.client.leaseTimeToLive(id, { keys: withKeys });
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      toJson({
        ...headerJson(info.header),
        id: info.id,
        ttl: info.ttl,
        'granted-ttl': info.grantedTtl,
        keys: info.keys,
      }),
    );
    return 0;
  }
  if (info.grantedTtl === 0n && info.ttl === -1n) {
    ctx.io.out(`lease ${leaseHex(id)} already expired`);
    return 0;
  }
  let text = `lease ${leaseHex(id)} granted with TTL(${info.grantedTtl}s), remaining(${info.ttl}s)`;
  if (withKeys) text += `, attached keys([${info.keys.map((k) => k.toString('utf8')).join(' ')}])`;
  ctx.io.out(text);
  return 0;
};

export const leaseList: Command = async (ctx) => {
  const result = await ctx.client.leaseLeases();
  if (ctx.writeOut === 'json') {
    ctx.io.out(toJson({ header: headerJson(result.header), leases: result.ids.map((id) => ({ ID: id })) }));
    return 0;
  }
  ctx.io.out(`found ${result.ids.length} leases`);
  for (const id of result.ids) ctx.io.out(leaseHex(id));
  return 0;
};

export const leaseKeepAlive: Command = async (ctx) => {
  const id = leaseOperand(ctx, 'lease keep-alive command needs lease ID as argument');
  const once = flagBool(ctx.args, 'once');
  const info = await ctx.client.leaseTimeToLive(id);
  if (info.ttl <= 0n) {
    ctx.io.out(`lease ${leaseHex(id)} expired or revoked.`);
    return 1;
  }
  let printed = 0;
  const keeper = ctx.client.keepAlive(id, { ttlSeconds: Number(info.grantedTtl) });
  const report = setInterval(() => {
    if (keeper.renewals > printed) {
      printed = keeper.renewals;
      ctx.io.out(`lease ${leaseHex(id)} keepalived with TTL(${info.grantedTtl})`);
      if (once) keeper.close();
    }
  }, 50);
  try {
    const outcome = await Promise.race([
      keeper.whenLost().then(() => 'lost' as const),
      aborted(ctx.signal).then(() => 'aborted' as const),
      once
        ? new Promise<'once'>((resolve) => {
            const poll = setInterval(() => {
              if (printed > 0) {
                clearInterval(poll);
                resolve('once');
              }
            }, 20);
          })
        : new Promise<never>(() => {}),
    ]);
    if (outcome === 'lost') {
      ctx.io.out(`lease ${leaseHex(id)} expired or revoked.`);
      return 1;
    }
    return 0;
  } finally {
    clearInterval(report);
    keeper.close();
  }
};

// lock and elect, in etcd's key layouts so they interoperate with etcdctl.

import { spawn } from 'node:child_process';
import { Election, Mutex, Session } from '../../client/index.js';
import { flagBool, flagInt, UsageError } from './args.js';
import { aborted, type Command } from './context.js';

export const lock: Command = async (ctx) => {
  const [name, ...command] = ctx.operands;
  if (name === undefined)
    throw new UsageError('lock takes a lock name argument and an optional command to execute');
  const session = await Session.create(ctx.client, { ttlSeconds: flagInt(ctx.args, 'ttl', 10) });
  const mutex = new Mutex(ctx.client, name, { session });
  try {
    await mutex.lock({ signal: ctx.signal });
    if (command.length === 0) {
      ctx.io.out(mutex.key);
      await Promise.race([aborted(ctx.signal), session.keepAlive.whenLost()]);
      return session.keepAlive.lost === undefined ? 0 : 1;
    }
    return await runHolding(command, { ETCD_LOCK_KEY: mutex.key, ETCD_LOCK_REV: mutex.token.toString() });
  } finally {
    await mutex.unlock().catch(() => undefined);
    await session.close().catch(() => undefined);
  }
};

function runHolding(command: string[], env: Record<string, string>): Promise<number> {
  const [file, ...args] = command as [string, ...string[]];
  const child = spawn(file, args, { stdio: 'inherit', env: { ...process.env, ...env } });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve(code ?? 1));
  });
}

export const elect: Command = async (ctx) => {
  const [name, proposal] = ctx.operands;
  if (name === undefined)
    throw new UsageError('elect takes one election name argument and an optional proposal');
  const election = new Election(ctx.client, name);
  if (flagBool(ctx.args, 'listen')) {
    for await (const leader of election.observe({ signal: ctx.signal })) {
      ctx.io.out(leader.key.toString('utf8'));
      ctx.io.out(leader.value.toString('utf8'));
    }
    return 0;
  }
  if (proposal === undefined) throw new UsageError('elect needs a proposal to campaign with (or --listen)');
  const session = await Session.create(ctx.client, { ttlSeconds: flagInt(ctx.args, 'ttl', 10) });
  const candidate = new Election(ctx.client, name, { session });
  try {
    await candidate.campaign(proposal, { signal: ctx.signal });
    ctx.io.out(candidate.key);
    ctx.io.out(proposal);
    await Promise.race([aborted(ctx.signal), session.keepAlive.whenLost()]);
    return session.keepAlive.lost === undefined ? 0 : 1;
  } finally {
    await candidate.resign().catch(() => undefined);
    await session.close().catch(() => undefined);
  }
};

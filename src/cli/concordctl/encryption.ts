// `encryption rotate-key ID` and `encryption status`: the admin calls of encryption at rest (a
// Concord extension), over HTTP(S) JSON on the members' client URLs (see
// ConcordServer.encryptionRoutes).

import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { UsageError } from './args.js';
import { type Command, type CommandContext, CommandError } from './context.js';

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

/** rotate-key: one member proposes the switch; every member applies it through Raft. */
export const rotateKey: Command = async (ctx) => {
  const [keyId, ...extra] = ctx.operands;
  if (keyId === undefined || extra.length > 0)
    throw new UsageError('encryption rotate-key needs exactly one key id');
  let lastError = 'no endpoint answered';
  for (const endpoint of ctx.endpoints) {
    let reply: Reply;
    try {
      reply = await call(ctx, endpoint, 'POST', '/concord/v1/encryption/rotate-key', { keyId });
    } catch (error) {
      lastError = `${endpoint}: ${(error as Error).message}`;
      continue;
    }
    if (reply.status !== 200)
      throw new CommandError(`rotate-key: ${String(reply.body.error ?? reply.status)}`);
    if (ctx.writeOut === 'json') ctx.io.out(JSON.stringify(reply.body));
    else
      ctx.io.out(
        `encryption key rotated: new writes use "${String(reply.body.activeKeyId)}"; older data is re-encrypted in the background (see encryption status)`,
      );
    return 0;
  }
  throw new CommandError(`rotate-key: ${lastError}`);
};

/** status: per member, the active key, the key file's ids and the ids stored data still uses. */
export const status: Command = async (ctx) => {
  const rows: Record<string, unknown>[] = [];
  let failed = false;
  for (const endpoint of ctx.endpoints) {
    try {
      const reply = await call(ctx, endpoint, 'GET', '/concord/v1/encryption/status');
      rows.push({ endpoint, ...reply.body });
    } catch (error) {
      failed = true;
      rows.push({ endpoint, error: (error as Error).message });
    }
  }
  if (ctx.writeOut === 'json') ctx.io.out(JSON.stringify(rows));
  else for (const row of rows) ctx.io.out(describe(row));
  return failed ? 1 : 0;
};

function describe(row: Record<string, unknown>): string {
  if (row.error !== undefined) return `${row.endpoint}: error: ${String(row.error)}`;
  if (row.enabled !== true) return `${row.endpoint}: member ${String(row.memberId)}, encryption at rest off`;
  const list = (value: unknown): string => (Array.isArray(value) ? value.join(',') : '');
  return (
    `${row.endpoint}: member ${String(row.memberId)}, active key ${String(row.activeKeyId)}, ` +
    `in use ${list(row.keyIdsInUse)}, in key file ${list(row.keyFileIds)}, ` +
    `re-encryption ${String(row.reencryption)}`
  );
}

export function call(
  ctx: CommandContext,
  endpoint: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Reply> {
  const https = endpoint.startsWith('https://') || (!endpoint.startsWith('http://') && ctx.tls !== undefined);
  const url = new URL(
    path,
    /^https?:\/\//.test(endpoint) ? endpoint : `${https ? 'https' : 'http'}://${endpoint}`,
  );
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const tls = ctx.tls;
  return new Promise((resolve, reject) => {
    const options = {
      method,
      timeout: ctx.commandTimeoutMs,
      headers: payload === undefined ? {} : { 'content-type': 'application/json' },
      ...(https && tls !== undefined
        ? { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: tls.insecureSkipVerify !== true }
        : {}),
    };
    const req = (https ? httpsRequest : httpRequest)(url, options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
        } catch {
          reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

// get, put, del, txn, watch, compaction, counter: the key-value commands.

import {
  type Compare,
  type CompareOperator,
  Counter,
  type DeleteResult,
  type GetOptions,
  type GetResult,
  type KeyValue,
  type Operation,
  type OperationResult,
  type PutResult,
  type SortTarget,
  type TxnResult,
  type WatchBatch,
  whenAborted,
} from '../../client/index.js';
import { flagBool, flagInt, flagString, UsageError } from './args.js';
import { type Command, type CommandContext, readAll } from './context.js';
import { headerJson, kvJson, toJson } from './output.js';

function printKv(ctx: CommandContext, kv: KeyValue, options: { valueOnly?: boolean } = {}): void {
  if (options.valueOnly !== true) ctx.io.out(kv.key.toString('utf8'));
  // Like etcdctl, --keys-only still prints a (then empty) value line.
  ctx.io.out(kv.value.toString('utf8'));
}

const sortTargets: Record<string, SortTarget> = {
  KEY: 'key',
  CREATE: 'create',
  MODIFY: 'mod',
  VALUE: 'value',
  VERSION: 'version',
};

function getOptions(ctx: CommandContext): GetOptions {
  const args = ctx.args;
  const options: GetOptions = {
    prefix: flagBool(args, 'prefix'),
    fromKey: flagBool(args, 'from-key'),
    limit: flagInt(args, 'limit', 0),
    revision: flagInt(args, 'rev', 0),
    keysOnly: flagBool(args, 'keys-only'),
    countOnly: flagBool(args, 'count-only'),
    serializable: flagString(args, 'consistency') === 's',
  };
  const sortBy = flagString(args, 'sort-by');
  const order = flagString(args, 'order');
  if (sortBy !== undefined || order !== undefined) {
    const target = sortTargets[(sortBy ?? 'KEY').toUpperCase()];
    if (target === undefined)
      throw new UsageError(`bad --sort-by ${sortBy} (CREATE, KEY, MODIFY, VALUE, VERSION)`);
    const o = (order ?? 'ASCEND').toUpperCase();
    if (o !== 'ASCEND' && o !== 'DESCEND') throw new UsageError(`bad --order ${order} (ASCEND, DESCEND)`);
    options.sort = { target, order: o === 'ASCEND' ? 'ascend' : 'descend' };
  }
  return options;
}

function printGet(ctx: CommandContext, result: GetResult): void {
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      toJson({
        header: headerJson(result.header),
        kvs: result.kvs.map(kvJson),
        more: result.more,
        count: result.count,
      }),
    );
    return;
  }
  if (flagBool(ctx.args, 'count-only')) {
    ctx.io.out(String(result.count));
    return;
  }
  for (const kv of result.kvs) {
    printKv(ctx, kv, {
      valueOnly: flagBool(ctx.args, 'print-value-only'),
    });
  }
}

export const get: Command = async (ctx) => {
  const [key, rangeEnd] = ctx.operands;
  if (key === undefined || ctx.operands.length > 2)
    throw new UsageError('get command needs one key argument (and an optional range end)');
  const options = getOptions(ctx);
  if (rangeEnd !== undefined) options.rangeEnd = rangeEnd;
  printGet(ctx, await ctx.client.get(key, options));
  return 0;
};

function printPut(ctx: CommandContext, result: PutResult): void {
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      toJson({ header: headerJson(result.header), prev_kv: result.prevKv && kvJson(result.prevKv) }),
    );
    return;
  }
  ctx.io.out('OK');
  if (result.prevKv !== undefined) printKv(ctx, result.prevKv);
}

function leaseFlag(text: string | undefined): bigint {
  if (text === undefined || text === '' || text === '0') return 0n;
  if (!/^[0-9a-fA-F]+$/.test(text))
    throw new UsageError(`bad lease ID ${JSON.stringify(text)} (hex expected)`);
  return BigInt(`0x${text}`);
}

export const put: Command = async (ctx) => {
  const [key, valueArg] = ctx.operands;
  if (key === undefined || ctx.operands.length > 2)
    throw new UsageError('put command needs 1 argument and input from stdin or 2 arguments');
  const ignoreValue = flagBool(ctx.args, 'ignore-value');
  let value = valueArg;
  if (value === undefined && !ignoreValue) value = await readAll(ctx.stdin);
  const result = await ctx.client.put(key, value ?? '', {
    lease: leaseFlag(flagString(ctx.args, 'lease')),
    prevKv: flagBool(ctx.args, 'prev-kv'),
    ignoreValue,
    ignoreLease: flagBool(ctx.args, 'ignore-lease'),
  });
  printPut(ctx, result);
  return 0;
};

function printDel(ctx: CommandContext, result: DeleteResult): void {
  if (ctx.writeOut === 'json') {
    ctx.io.out(
      toJson({
        header: headerJson(result.header),
        deleted: result.deleted,
        prev_kvs: result.prevKvs.map(kvJson),
      }),
    );
    return;
  }
  ctx.io.out(String(result.deleted));
  for (const kv of result.prevKvs) printKv(ctx, kv);
}

export const del: Command = async (ctx) => {
  const [key, rangeEnd] = ctx.operands;
  if (key === undefined || ctx.operands.length > 2)
    throw new UsageError('del command needs one key argument (and an optional range end)');
  const result = await ctx.client.delete(key, {
    prefix: flagBool(ctx.args, 'prefix'),
    fromKey: flagBool(ctx.args, 'from-key'),
    rangeEnd,
    prevKv: flagBool(ctx.args, 'prev-kv'),
  });
  printDel(ctx, result);
  return 0;
};

// ---- txn -----------------------------------------------------------------------------------------

/** Splits a line into words, honouring "double" and 'single' quotes and backslash escapes. */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  let current = '';
  let quote: string | undefined;
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (quote !== undefined) {
      if (c === '\\' && quote === '"' && i + 1 < line.length) current += line[++i];
      else if (c === quote) quote = undefined;
      else current += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += c;
      inWord = true;
    }
  }
  if (quote !== undefined) throw new UsageError(`unterminated quote in ${JSON.stringify(line)}`);
  if (inWord) words.push(current);
  return words;
}

const compareTargets: Record<string, Compare['target']> = {
  val: 'value',
  value: 'value',
  ver: 'version',
  version: 'version',
  create: 'createRevision',
  mod: 'modRevision',
  lease: 'lease',
};

/** `mod("key") > "5"`, `val("k") = "v"` (etcdctl's txn compare syntax). */
export function parseCompare(line: string): Compare {
  const match = /^\s*(\w+)\("((?:[^"\\]|\\.)*)"\)\s*(=|!=|<|>)\s*(.*?)\s*$/.exec(line);
  if (match === null) throw new UsageError(`malformed comparison: ${line}`);
  const target = compareTargets[match[1] as string];
  if (target === undefined)
    throw new UsageError(`malformed comparison: ${line} (unknown target ${match[1]})`);
  const key = Buffer.from((match[2] as string).replace(/\\(.)/g, '$1'));
  const [operandText] = splitWords(match[4] as string);
  if (operandText === undefined) throw new UsageError(`malformed comparison: ${line} (no operand)`);
  const operator = match[3] as CompareOperator;
  if (target === 'value') return { key, target, operator, operand: Buffer.from(operandText) };
  const number = target === 'lease' ? BigInt(`0x${operandText}`) : BigInt(operandText);
  return { key, target, operator, operand: number };
}

/** `put k v [--lease=ID]`, `get k [--prefix]`, `del k [--prefix]` (etcdctl's txn op syntax). */
export function parseOperation(line: string): Operation {
  const words = splitWords(line);
  const flags = new Set(words.filter((w) => w.startsWith('--')));
  const lease = [...flags].find((f) => f.startsWith('--lease='))?.slice('--lease='.length);
  const plain = words.filter((w) => !w.startsWith('--'));
  const [verb, key, arg] = plain;
  if (key === undefined) throw new UsageError(`malformed request: ${line}`);
  const range = {
    prefix: flags.has('--prefix'),
    fromKey: flags.has('--from-key'),
    rangeEnd: verb === 'put' ? undefined : arg,
  };
  switch (verb) {
    case 'put':
      if (arg === undefined) throw new UsageError(`malformed put: ${line}`);
      return {
        type: 'put',
        key,
        value: arg,
        options: { lease: leaseFlag(lease), prevKv: flags.has('--prev-kv') },
      };
    case 'get':
      return { type: 'get', key, options: range };
    case 'del':
    case 'delete':
      return { type: 'delete', key, options: { ...range, prevKv: flags.has('--prev-kv') } };
    default:
      throw new UsageError(`malformed request: ${line} (expected put, get or del)`);
  }
}

/** Reads etcdctl's txn input: compares, blank line, success ops, blank line, failure ops. */
export function parseTxnInput(text: string): {
  compares: Compare[];
  success: Operation[];
  failure: Operation[];
} {
  const sections: string[][] = [[]];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '') {
      if (sections.length < 3) sections.push([]);
      continue;
    }
    (sections[sections.length - 1] as string[]).push(line);
  }
  return {
    compares: (sections[0] ?? []).map(parseCompare),
    success: (sections[1] ?? []).map(parseOperation),
    failure: (sections[2] ?? []).map(parseOperation),
  };
}

function printTxn(ctx: CommandContext, result: TxnResult): void {
  if (ctx.writeOut === 'json') {
    const responses = result.responses.map((r: OperationResult) => {
      const header = headerJson(r.header);
      if (r.type === 'get')
        return {
          Response: { response_range: { header, kvs: r.kvs.map(kvJson), more: r.more, count: r.count } },
        };
      if (r.type === 'put')
        return { Response: { response_put: { header, prev_kv: r.prevKv && kvJson(r.prevKv) } } };
      return {
        Response: { response_delete_range: { header, deleted: r.deleted, prev_kvs: r.prevKvs.map(kvJson) } },
      };
    });
    ctx.io.out(toJson({ header: headerJson(result.header), succeeded: result.succeeded, responses }));
    return;
  }
  ctx.io.out(result.succeeded ? 'SUCCESS' : 'FAILURE');
  for (const response of result.responses) {
    ctx.io.out('');
    if (response.type === 'get') for (const kv of response.kvs) printKv(ctx, kv);
    else if (response.type === 'put') printPut(ctx, response);
    else printDel(ctx, response);
  }
}

export const txn: Command = async (ctx) => {
  const interactive = flagBool(ctx.args, 'interactive');
  if (interactive)
    ctx.io.err(
      'compares, then success requests (get, put, del), then failure requests; a blank line ends each section',
    );
  const { compares, success, failure } = parseTxnInput(await readAll(ctx.stdin));
  const result = await ctx.client
    .txn()
    .if(...compares)
    .then(...success)
    .else(...failure)
    .commit();
  printTxn(ctx, result);
  return 0;
};

// ---- watch ---------------------------------------------------------------------------------------

function printWatchBatch(ctx: CommandContext, batch: WatchBatch): void {
  if (ctx.writeOut === 'json') {
    const events = batch.events.map((e) => ({
      type: e.type === 'delete' ? 1 : 0,
      kv: kvJson(e.kv),
      prev_kv: e.prevKv && kvJson(e.prevKv),
    }));
    ctx.io.out(toJson({ Header: { revision: batch.revision }, Events: events }));
    return;
  }
  for (const event of batch.events) {
    ctx.io.out(event.type === 'delete' ? 'DELETE' : 'PUT');
    if (event.prevKv !== undefined) printKv(ctx, event.prevKv);
    printKv(ctx, event.kv);
  }
}

export const watch: Command = async (ctx) => {
  const [key, rangeEnd] = ctx.operands;
  if (key === undefined || ctx.operands.length > 2)
    throw new UsageError('watch needs a key (and an optional range end)');
  const revision = flagInt(ctx.args, 'rev', 0);
  const watcher = ctx.client.watch(key, {
    prefix: flagBool(ctx.args, 'prefix'),
    rangeEnd,
    fromRevision: revision > 0 ? revision : undefined,
    prevKv: flagBool(ctx.args, 'prev-kv'),
  });
  whenAborted(ctx.signal, () => watcher.close());
  for await (const batch of watcher.batches()) printWatchBatch(ctx, batch);
  return 0;
};

export const compaction: Command = async (ctx) => {
  const [revisionText] = ctx.operands;
  if (revisionText === undefined || !/^\d+$/.test(revisionText))
    throw new UsageError('compaction command needs 1 argument: the revision');
  await ctx.client.compact(BigInt(revisionText), { physical: flagBool(ctx.args, 'physical') });
  ctx.io.out(`compacted revision ${revisionText}`);
  return 0;
};

export const counterIncr: Command = async (ctx) => {
  const [key] = ctx.operands;
  if (key === undefined || ctx.operands.length !== 1)
    throw new UsageError('counter incr needs exactly one key');
  const by = flagString(ctx.args, 'by') ?? '1';
  if (!/^-?\d+$/.test(by)) throw new UsageError('--by needs an integer');
  const counter = new Counter(ctx.client, key);
  const value = await counter.incr(BigInt(by));
  if (ctx.writeOut === 'json') ctx.io.out(toJson({ key, value, conflicts: BigInt(counter.conflicts) }));
  else ctx.io.out(value.toString());
  return 0;
};

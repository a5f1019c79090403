// What every concordctl command gets: the client, the output format and streams, the timeouts.

import type { Client, TlsOptions } from '../../client/index.js';
import type { ParsedArgs } from './args.js';
import type { Output, WriteOut } from './output.js';

export interface CommandContext {
  client: Client;
  endpoints: string[];
  /** The TLS flags (--cacert, --cert, --key, --insecure-skip-tls-verify); undefined: plaintext. */
  tls: TlsOptions | undefined;
  writeOut: WriteOut;
  io: Output;
  args: ParsedArgs;
  /** Positional arguments after the command (and subcommand) words. */
  operands: string[];
  stdin: NodeJS.ReadableStream;
  commandTimeoutMs: number;
  dialTimeoutMs: number;
  /** Aborted on SIGINT/SIGTERM: long-running commands (watch, lock, elect) end cleanly. */
  signal: AbortSignal;
}

/** A command returns its exit code. */
export type Command = (ctx: CommandContext) => Promise<number>;

export class CommandError extends Error {
  readonly code = 'command';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

export async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}

/** Resolves when the signal aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

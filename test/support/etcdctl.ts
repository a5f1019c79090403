// Runs etcdctl (v3 API) as a child process with a deadline, capturing its output.

import { type ChildProcess, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export const etcdctlPath = process.env.E2E_ETCDCTL_BIN ?? '/usr/bin/etcdctl';
const defaultTimeoutMs = 15_000;
const outputBytesMax = 4 * 1024 * 1024;

export interface EtcdctlResult {
  stdout: string;
  /** stdout as the bytes etcdctl wrote (`-w protobuf` prints binary). */
  stdoutBytes: Buffer;
  stderr: string;
  /** Exit code; null when the process was killed by the deadline. */
  code: number | null;
  timedOut: boolean;
}

export interface EtcdctlOptions {
  endpoints: string[];
  stdin?: string;
  timeoutMs?: number;
}

function etcdctlArgs(args: string[], endpoints: string[]): string[] {
  return [`--endpoints=${endpoints.join(',')}`, '--dial-timeout=3s', '--command-timeout=10s', ...args];
}

function spawnEtcdctl(args: string[], endpoints: string[]): ChildProcess {
  const child = spawn(etcdctlPath, etcdctlArgs(args, endpoints), {
    env: { ...process.env, ETCDCTL_API: '3' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  // An etcdctl that exits before reading its input (a command that fails fast) closes the pipe:
  // our write then fails with EPIPE, which as an unhandled 'error' would fail the whole test file.
  // The command's outcome is judged by its exit code and output.
  child.stdin?.on('error', () => undefined);
  return child;
}

interface Sink {
  chunks: Buffer[];
  bytes: number;
}

function collect(stream: NodeJS.ReadableStream | null, sink: Sink): void {
  stream?.on('data', (chunk: Buffer) => {
    if (sink.bytes >= outputBytesMax) return;
    sink.chunks.push(chunk);
    sink.bytes += chunk.length;
  });
}

const newSink = (): Sink => ({ chunks: [], bytes: 0 });
const sinkBytes = (sink: Sink): Buffer => Buffer.concat(sink.chunks);

/** Runs one etcdctl command to completion (or until the deadline, then SIGKILL). */
export function etcdctl(args: string[], options: EtcdctlOptions): Promise<EtcdctlResult> {
  const child = spawnEtcdctl(args, options.endpoints);
  const stdout = newSink();
  const stderr = newSink();
  collect(child.stdout, stdout);
  collect(child.stderr, stderr);
  child.stdin?.end(options.stdin ?? '');
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? defaultTimeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      const stdoutBytes = sinkBytes(stdout);
      resolve({
        stdout: stdoutBytes.toString('utf8'),
        stdoutBytes,
        stderr: sinkBytes(stderr).toString('utf8'),
        code: timedOut ? null : code,
        timedOut,
      });
    });
  });
}

/** Like etcdctl() but throws with the output when the command did not exit 0. */
export async function etcdctlOk(args: string[], options: EtcdctlOptions): Promise<string> {
  const result = await etcdctl(args, options);
  if (result.code !== 0) {
    throw new Error(
      `etcdctl ${args.join(' ')} failed (code ${result.code}, timedOut ${result.timedOut}):\n${result.stderr}${result.stdout}`,
    );
  }
  return result.stdout;
}

/** A long-running etcdctl (e.g. `watch`) whose output is read while it runs. */
export class EtcdctlProcess {
  private readonly child: ChildProcess;
  private readonly out = newSink();
  private readonly err = newSink();
  private exited = false;

  constructor(args: string[], endpoints: string[]) {
    this.child = spawnEtcdctl(args, endpoints);
    collect(this.child.stdout, this.out);
    collect(this.child.stderr, this.err);
    this.child.stdin?.end();
    this.child.once('close', () => {
      this.exited = true;
    });
  }

  get stdout(): string {
    return sinkBytes(this.out).toString('utf8');
  }

  get stdoutBytes(): Buffer {
    return sinkBytes(this.out);
  }

  /** How many bytes of output so far. */
  get stdoutLength(): number {
    return this.out.bytes;
  }

  get stderr(): string {
    return sinkBytes(this.err).toString('utf8');
  }

  get hasExited(): boolean {
    return this.exited;
  }

  /** Polls the output until `done(stdout)` holds; throws with the output after `timeoutMs`. */
  async waitFor(what: string, done: (stdout: string) => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.stdout)) {
      if (Date.now() > deadline || this.exited) {
        throw new Error(
          `etcdctl: ${what} not seen (exited=${this.exited})\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`,
        );
      }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const closed = new Promise((resolve) => this.child.once('close', resolve));
    this.child.kill('SIGKILL');
    await closed;
  }
}

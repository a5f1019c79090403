// One mount of plfs (plfs.py beside this file's source): a FUSE file system that keeps every
// write not yet covered by an fsync in memory and drops a random part of it on powerOff(). The
// survived tree lands in `backingDir`; mount() again starts a fresh "boot" on it.
//
// Every mount this process made is unmounted on exit (lazily, if a process still holds it), so a
// failed test leaves no mount behind.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

/** Debian's python3 has python3-fusepy; a pyenv or venv python on PATH usually does not. */
export const PYTHON = process.env.PLFS_PYTHON ?? '/usr/bin/python3';
const CONTROL_FILE = '.plfs-control';
const MOUNT_TIMEOUT_MS = 10_000;
const EXIT_TIMEOUT_MS = 10_000;
const UNMOUNT_ATTEMPTS_MAX = 50;
const UNMOUNT_RETRY_MS = 100;
const LOG_BYTES_MAX = 16 * 1024;

export class PlfsError extends Error {
  readonly code = 'PLFS_ERROR';
}

/** What one power cut kept and dropped (printed by plfs.py). */
export interface PowerOffReport {
  keptPages: number;
  droppedPages: number;
  keptDirOps: number;
  droppedDirOps: number;
}

/** plfs.py from the source tree: the compiled harness may live in dist/ or .build/<name>/. */
export function plfsScript(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'test', 'powerloss', 'plfs.py');
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) throw new PlfsError('plfs.py not found above the compiled harness');
    dir = up;
  }
}

/** Why plfs cannot run here, or undefined when it can (root or fuse group, /dev/fuse, fusepy). */
export function plfsUnavailableReason(): string | undefined {
  if (!existsSync('/dev/fuse')) return '/dev/fuse is missing';
  const probe = spawnSync(PYTHON, ['-c', 'import fusepy'], { encoding: 'utf8' });
  if (probe.status !== 0) return `${PYTHON} cannot import fusepy (apt-get install python3-fusepy)`;
  const fusermount = spawnSync('fusermount3', ['-V'], { encoding: 'utf8' });
  if (fusermount.status !== 0) return 'fusermount3 is missing (apt-get install fuse3)';
  return undefined;
}

const liveMounts = new Set<PlfsMount>();
process.on('exit', () => {
  for (const mount of liveMounts) mount.forceUnmountSync();
});

export class PlfsMount {
  private child: ChildProcess | undefined;
  private output = '';
  private readonly powerOffs: PowerOffReport[] = [];

  constructor(
    readonly backingDir: string,
    readonly mountPoint: string,
  ) {}

  get mounted(): boolean {
    return this.child !== undefined;
  }

  /** Mounts the backing dir's tree (all of it durable) and waits until the file system answers. */
  async mount(seed: number): Promise<void> {
    if (this.child !== undefined) throw new PlfsError(`${this.mountPoint} is already mounted`);
    mkdirSync(this.backingDir, { recursive: true });
    mkdirSync(this.mountPoint, { recursive: true });
    const child = spawn(PYTHON, [plfsScript(), this.backingDir, this.mountPoint, String(seed)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.output = '';
    liveMounts.add(this);
    const ready = new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        this.append(chunk.toString('utf8'));
        if (this.output.includes('ready\n')) resolve();
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', (chunk: Buffer) => this.append(chunk.toString('utf8')));
      child.once('exit', (code, signal) => {
        this.child = undefined;
        liveMounts.delete(this);
        reject(new PlfsError(`plfs exited before it was ready (${code ?? signal}): ${this.output}`));
      });
    });
    const timeout = sleep(MOUNT_TIMEOUT_MS).then(() => {
      throw new PlfsError(`plfs did not mount ${this.mountPoint} within ${MOUNT_TIMEOUT_MS} ms`);
    });
    try {
      await Promise.race([ready, timeout]);
    } catch (error) {
      await this.unmount();
      throw error;
    }
  }

  private append(text: string): void {
    this.output = (this.output + text).slice(-LOG_BYTES_MAX);
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const parsed = JSON.parse(line) as PowerOffReport & { poweroff?: boolean };
        if (parsed.poweroff) this.powerOffs.push(parsed);
      } catch {
        // not a report line
      }
    }
  }

  /**
   * Cuts the power: what was not synced is partly dropped, the rest written to the backing dir,
   * and every later operation on the mount fails with EIO. Returns what was kept and dropped.
   */
  async powerOff(): Promise<PowerOffReport> {
    if (this.child === undefined) throw new PlfsError(`${this.mountPoint} is not mounted`);
    const before = this.powerOffs.length;
    writeFileSync(join(this.mountPoint, CONTROL_FILE), 'poweroff\n');
    for (let i = 0; i < 100 && this.powerOffs.length === before; i++) await sleep(20);
    const report = this.powerOffs[before];
    if (report === undefined) throw new PlfsError(`plfs did not report the power cut: ${this.output}`);
    return report;
  }

  /** Unmounts (once no process holds a file on it) and waits for plfs to exit. */
  async unmount(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    for (let attempt = 0; ; attempt++) {
      const result = spawnSync('fusermount3', ['-u', this.mountPoint], { encoding: 'utf8' });
      if (result.status === 0 || !isMounted(this.mountPoint)) break;
      if (attempt >= UNMOUNT_ATTEMPTS_MAX) {
        spawnSync('fusermount3', ['-u', '-z', this.mountPoint]);
        break;
      }
      await sleep(UNMOUNT_RETRY_MS);
    }
    const timedOut = await Promise.race([exited.then(() => false), sleep(EXIT_TIMEOUT_MS).then(() => true)]);
    if (timedOut) child.kill('SIGKILL');
    this.child = undefined;
    liveMounts.delete(this);
  }

  /** Last resort on process exit: lazy unmount, kill plfs. */
  forceUnmountSync(): void {
    spawnSync('fusermount3', ['-u', '-z', this.mountPoint]);
    this.child?.kill('SIGKILL');
    this.child = undefined;
  }

  log(): string {
    return this.output;
  }
}

function isMounted(path: string): boolean {
  try {
    return readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .some((line) => line.split(' ')[1] === path);
  } catch {
    return false;
  }
}

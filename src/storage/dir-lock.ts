// One writer per WAL directory. Two processes appending to the same segments would interleave
// records and destroy the log, so open() takes a lock file holding the owner's pid. Node has no
// flock(), so a lock whose pid is no longer alive (the owner was SIGKILLed) is taken over.

import { open, readFile, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { WalLockedError } from './errors.js';

const LOCK_FILE = 'LOCK';

export class DirLock {
  /** Locks held by this process: a pid check cannot tell two owners in one process apart. */
  private static readonly held = new Set<string>();
  private released = false;

  private constructor(readonly path: string) {}

  static async acquire(dir: string): Promise<DirLock> {
    const path = join(resolve(dir), LOCK_FILE);
    if (DirLock.held.has(path)) throw new WalLockedError(dir, process.pid);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(path, 'wx');
        try {
          await fh.writeFile(`${process.pid}\n`);
        } finally {
          await fh.close();
        }
        DirLock.held.add(path);
        return new DirLock(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const owner = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
        if (owner > 0 && owner !== process.pid && isAlive(owner)) throw new WalLockedError(dir, owner);
        await unlink(path).catch(() => {}); // stale: its owner is gone
      }
    }
    throw new WalLockedError(dir, 0);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    DirLock.held.delete(this.path);
    await unlink(this.path).catch(() => {});
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

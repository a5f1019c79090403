// Making file-system changes survive a power loss. A write is on disk once fsync/fdatasync of its
// file returns; a new name (create, mkdir, rename) or a removed one only once its directory has
// been fsynced too. Without that a power cut can take away a whole directory that held synced
// files (test/powerloss shows it: a data dir whose member/wal entry vanished).

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** fsyncs a directory, making the names created, renamed or removed in it durable. */
export function syncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsyncs a file's data and size. */
export function syncFileSync(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * mkdir -p whose result survives a power cut: every directory it creates is fsynced into its
 * parent. Directories that already existed are left alone (they were made durable when created).
 */
export function mkdirDurableSync(dir: string): void {
  const missing: string[] = [];
  for (let path = resolve(dir); !existsSync(path); path = dirname(path)) {
    missing.unshift(path);
    if (dirname(path) === path) break;
  }
  for (const path of missing) {
    mkdirSync(path);
    syncDirSync(dirname(path));
  }
}

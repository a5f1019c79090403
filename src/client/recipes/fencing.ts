// Fencing: make a write conditional on still holding a lock.
//
// A lock holder can be paused (GC, swap, a stopped VM) past its lease, lose the lock, wake up
// and write as if it still held it. The fencing token (the lock key's create revision) stops
// that: the write is a txn that applies only while the holder's key still exists with the
// same create revision, i.e. while no one else could have been granted the lock.
//
//   const mutex = new Mutex(client, 'reports/lock');
//   const token = await mutex.lock();
//   try {
//     const applied = await guardedPut(client, 'reports/latest', body, { lockKey: mutex.key, token });
//     if (!applied) throw new Error('lost the lock before writing; nothing was written');
//   } finally {
//     await mutex.unlock();
//   }

import type { Client } from '../client.js';
import type { PutOptions } from '../ops.js';
import type { Bytes } from '../types.js';

export function guardedPut(
  client: Client,
  key: Bytes,
  value: Bytes,
  guard: { lockKey: Bytes; token: bigint },
  options: PutOptions = {},
): Promise<boolean> {
  return client.guardedPut(key, value, guard, options);
}

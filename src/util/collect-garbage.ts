// A full V8 collection on demand, for the few places where a member knows that a large amount of
// memory just died and that nothing may allocate enough to collect it soon.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

/**
 * Runs a full collection now (one main-thread pause). Without --expose-gc, node has no `gc`
 * function: setting the flag at run time makes V8 install one in contexts created afterwards.
 */
export function collectGarbage(): void {
  if (gc === undefined) {
    const given = (globalThis as { gc?: () => void }).gc;
    if (given !== undefined) gc = given;
    else {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
    }
  }
  gc();
}

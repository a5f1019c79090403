// Real `concord` processes on loopback. The compiled concord.js is found next to this file's own
// compiled location (<build>/test/support → <build>/src/cli), so the harness runs the server
// built into the same output dir: dist/ under `npm test`, .build/<name>/ for a helper.

import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SERVING_NODE_FLAGS } from '../../src/cli/serving-flags.js';
import { type ClusterOptions, HarnessError, ProcessCluster, type ServerBinary } from './process-cluster.js';

export { type ClusterOptions, ProcessCluster } from './process-cluster.js';

export function concordBinary(): ServerBinary {
  const script = fileURLToPath(new URL('../../src/cli/concord.js', import.meta.url));
  if (!existsSync(script)) throw new HarnessError(`compiled concord not found at ${script}; build first`);
  return { label: 'concord', command: process.execPath, argsBefore: [...SERVING_NODE_FLAGS, script] };
}

/**
 * Starts `size` concord members and waits until /health is true on all of them. Async, so a
 * missing build is a rejection like any other failed start (a caller starting an etcd cluster
 * beside it then disposes that one).
 */
export async function startConcordCluster(options: ClusterOptions): Promise<ProcessCluster> {
  return ProcessCluster.start(concordBinary(), options);
}

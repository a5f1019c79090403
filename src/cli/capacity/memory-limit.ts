// The memory this process may use: its cgroup's limit when one is set (a container), else the
// host's total memory. process.constrainedMemory() reports "no limit" as 0 or as a huge number
// (2^64 on cgroup v2 "max", about 2^63 on cgroup v1), so the smaller of the two wins.

import { totalmem } from 'node:os';

export function memoryLimitBytes(): number {
  const host = totalmem();
  const constrained = process.constrainedMemory?.() ?? 0;
  return constrained > 0 ? Math.min(constrained, host) : host;
}

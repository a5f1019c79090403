// Summarizes a V8 .cpuprofile (written by `node --cpu-prof`): self time per function, the
// samples whose top frame was that function, summed over every call site.

import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTimeRow {
  functionName: string;
  location: string;
  selfMs: number;
  percent: number;
}

export function readCpuProfile(path: string): CpuProfile {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  if (
    !Array.isArray(profile.nodes) ||
    !Array.isArray(profile.samples) ||
    profile.samples.length !== profile.timeDeltas.length
  )
    throw new Error(`${path} is not a V8 CPU profile`);
  return profile;
}

/**
 * Time window in the profile's clock: V8 stamps samples with CLOCK_MONOTONIC microseconds, the
 * clock of process.hrtime in any process on the same machine, so a window measured by the bench
 * client selects the samples taken under load.
 */
export interface ProfileWindow {
  fromUs: number;
  toUs: number;
}

export function monotonicNowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** Top `limit` functions by self time; `(idle)` is kept so an idle process shows as such. */
export function topSelfTime(profile: CpuProfile, limit: number, window?: ProfileWindow): SelfTimeRow[] {
  const nodeById = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUsByFunction = new Map<string, { functionName: string; location: string; us: number }>();
  let totalUs = 0;
  let sampleUs = profile.startTime;
  // timeDeltas[i] is the time before sample i; attributing it to sample i is what DevTools does.
  for (let i = 0; i < profile.samples.length; i++) {
    sampleUs += profile.timeDeltas[i]!;
    if (window !== undefined && (sampleUs < window.fromUs || sampleUs > window.toUs)) continue;
    const node = nodeById.get(profile.samples[i]!);
    if (node === undefined) throw new Error(`profile sample refers to unknown node ${profile.samples[i]}`);
    const deltaUs = Math.max(0, profile.timeDeltas[i]!);
    totalUs += deltaUs;
    const frame = node.callFrame;
    const location = frame.url === '' ? '' : `${shortUrl(frame.url)}:${frame.lineNumber + 1}`;
    const functionName = frame.functionName === '' ? '(anonymous)' : frame.functionName;
    const key = `${functionName} ${location}`;
    const row = selfUsByFunction.get(key) ?? { functionName, location, us: 0 };
    row.us += deltaUs;
    selfUsByFunction.set(key, row);
  }
  return [...selfUsByFunction.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, limit)
    .map((row) => ({
      functionName: row.functionName,
      location: row.location,
      selfMs: row.us / 1000,
      percent: totalUs > 0 ? (row.us / totalUs) * 100 : 0,
    }));
}

/** `file:///work/main/dist/src/raft/raft.js` → `src/raft/raft.js`; node_modules paths keep the package. */
function shortUrl(url: string): string {
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) return url.slice(modules + 'node_modules/'.length);
  const src = url.lastIndexOf('/src/');
  if (src >= 0) return url.slice(src + 1);
  return url.replace(/^file:\/\//, '');
}

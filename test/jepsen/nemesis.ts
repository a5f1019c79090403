// The nemesis: faults injected into real member processes on a schedule drawn from a seed. The
// schedule (when, which fault, how long, which random member) depends only on the seed; who is
// leader at that moment is looked up when the step runs. One fault is active at a time, and
// each is healed before the next begins, so the cluster always has a way back.

import { setTimeout as sleep } from 'node:timers/promises';
import { assertNever, seededRandom } from '../../src/sim/check/index.js';
import type { ProcessCluster } from '../support/cluster.js';

export const FAULT_KINDS = [
  'kill-leader',
  'kill-follower',
  'pause-leader',
  'pause-follower',
  'partition-majority',
  'partition-leader',
  'partition-bridge',
  'partition-one-way',
  'slow-links',
  'member-replace',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Named nemeses: each draws its steps from these fault kinds. */
export const NEMESES = {
  none: [],
  kill: ['kill-leader', 'kill-follower'],
  pause: ['pause-leader', 'pause-follower'],
  partition: ['partition-majority', 'partition-leader', 'partition-bridge', 'partition-one-way'],
  'partition-leader': ['partition-leader'],
  slow: ['slow-links'],
  member: ['member-replace'],
  all: [
    'kill-leader',
    'kill-follower',
    'pause-leader',
    'pause-follower',
    'partition-majority',
    'partition-leader',
    'partition-bridge',
    'partition-one-way',
    'slow-links',
  ],
} as const satisfies Record<string, readonly FaultKind[]>;
export type NemesisName = keyof typeof NEMESES;

export function isNemesisName(name: string): name is NemesisName {
  return Object.hasOwn(NEMESES, name);
}

export interface NemesisStep {
  /** Milliseconds after the workload started. */
  startMs: number;
  holdMs: number;
  kind: FaultKind;
  /** A seeded number in [0, 1) choosing the random members the fault touches. */
  pick: number;
  /** For slow-links: the delay added to every peer message. */
  delayMs: number;
}

/** The first fault starts after this warm-up, so every client has a baseline first. */
const warmupMs = 1000;
const gapMinMs = 800;
const gapSpreadMs = 1500;
const holdMinMs = 1200;
const holdSpreadMs = 1800;
/** Faults end this long before the workload stops, leaving time to heal under load. */
const tailMs = 1000;
const stepsMax = 200;

/** The whole schedule for one run; same nemesis, seed and duration → same steps. */
export function nemesisSchedule(nemesis: NemesisName, seed: number, durationMs: number): NemesisStep[] {
  const kinds: readonly FaultKind[] = NEMESES[nemesis];
  if (kinds.length === 0) return [];
  const random = seededRandom(seed ^ 0x5eed);
  const steps: NemesisStep[] = [];
  let at = warmupMs + Math.floor(random() * gapSpreadMs);
  while (steps.length < stepsMax) {
    const kind = kinds[Math.floor(random() * kinds.length)] as FaultKind;
    const holdMs = holdMinMs + Math.floor(random() * holdSpreadMs);
    const step = { startMs: at, holdMs, kind, pick: random(), delayMs: 50 + Math.floor(random() * 150) };
    if (at + holdMs > durationMs - tailMs) break;
    steps.push(step);
    at += holdMs + gapMinMs + Math.floor(random() * gapSpreadMs);
  }
  return steps;
}

export function describeStep(step: NemesisStep): string {
  const extra = step.kind === 'slow-links' ? ` delay=${step.delayMs}ms` : '';
  return `${step.kind}@${(step.startMs / 1000).toFixed(1)}s+${(step.holdMs / 1000).toFixed(1)}s${extra}`;
}

export class NemesisError extends Error {
  readonly code = 'JEPSEN_NEMESIS_ERROR';
  constructor(message: string) {
    super(message);
    this.name = 'NemesisError';
  }
}

const faultRequestTimeoutMs = 2000;
/** A restarted or resumed member may need a few election timeouts before a leader is known. */
const leaderLookupTimeoutMs = 8000;

/** POST/DELETE /debug/faults on one member (needs --experimental-fault-injection). */
export async function setPeerFaults(
  clientUrl: string,
  spec: { drop: string[]; delayMs?: number } | 'heal',
): Promise<void> {
  let response: Response;
  try {
    response = await fetch(`${clientUrl}/debug/faults`, {
      method: spec === 'heal' ? 'DELETE' : 'POST',
      headers: { 'content-type': 'application/json' },
      ...(spec === 'heal' ? {} : { body: JSON.stringify(spec) }),
      signal: AbortSignal.timeout(faultRequestTimeoutMs),
    });
  } catch (error) {
    // Not listening yet: a process still starting keeps no link faults, so there is nothing to heal.
    const cause = (error as { cause?: { code?: unknown } }).cause;
    if (spec === 'heal' && cause?.code === 'ECONNREFUSED') return;
    throw error;
  }
  const text = await response.text();
  if (!response.ok) throw new NemesisError(`/debug/faults on ${clientUrl}: HTTP ${response.status} ${text}`);
}

/** The member's own ID in hex, as /debug/faults names peers. */
export function memberIdHex(decimalId: string): string {
  if (!/^\d+$/.test(decimalId) || decimalId === '0') throw new NemesisError(`bad member id "${decimalId}"`);
  return BigInt(decimalId).toString(16);
}

/** Runs a schedule against a cluster; every action and error is logged for the report. */
export class Nemesis {
  readonly log: string[] = [];
  /** Members that exited without the nemesis killing them: a crash is a server bug. */
  readonly crashes: string[] = [];
  private readonly healers: Array<() => Promise<void>> = [];
  /** Members the nemesis killed and has not restarted yet. */
  private readonly killed = new Set<number>();

  constructor(
    private readonly cluster: ProcessCluster,
    private readonly started: number,
  ) {}

  private note(text: string): void {
    this.log.push(`${((performance.now() - this.started) / 1000).toFixed(2)}s ${text}`);
  }

  async run(schedule: readonly NemesisStep[], stop: AbortSignal): Promise<void> {
    for (const step of schedule) {
      const wait = this.started + step.startMs - performance.now();
      if (wait > 0) await sleep(wait, undefined, { signal: stop }).catch(() => undefined);
      if (stop.aborted) return;
      try {
        await this.apply(step);
      } catch (error) {
        this.note(`${step.kind} failed: ${(error as Error).message}`);
      }
      await sleep(step.holdMs, undefined, { signal: stop }).catch(() => undefined);
      await this.healActive();
    }
  }

  /** Undoes the active fault (resume, restart, clear link faults). */
  async healActive(): Promise<void> {
    while (this.healers.length > 0) {
      const heal = this.healers.pop() as () => Promise<void>;
      try {
        await heal();
      } catch (error) {
        this.note(`heal failed: ${(error as Error).message}`);
      }
    }
  }

  /** End of run: every member not removed is running, unpaused, with no link faults. */
  async healAll(): Promise<void> {
    await this.healActive();
    // A freshly started process has no link faults; only members that stayed up need clearing.
    const restarted = new Set<number>();
    for (const index of this.cluster.members.keys()) {
      const member = this.cluster.member(index);
      if (member.state === 'paused') this.cluster.resume(index);
      if (member.state !== 'stopped') continue;
      if (!this.killed.has(index)) {
        const tail = member.log.text().split('\n').slice(-6).join('\n    ');
        this.crashes.push(
          `${member.name} exited code=${member.exitCode} signal=${member.exitSignal}:\n    ${tail}`,
        );
      }
      await this.cluster.restart(index, { waitHealthy: false });
      this.killed.delete(index);
      restarted.add(index);
    }
    for (const index of this.cluster.runningIndexes()) {
      if (!restarted.has(index)) await this.retry(() => setPeerFaults(this.cluster.endpoint(index), 'heal'));
    }
    this.note('healed all');
  }

  private async retry(action: () => Promise<void>): Promise<void> {
    const attemptsMax = 10;
    for (let attempt = 1; ; attempt++) {
      try {
        await action();
        return;
      } catch (error) {
        if (attempt >= attemptsMax) throw error;
        await sleep(300);
      }
    }
  }

  private async apply(step: NemesisStep): Promise<void> {
    switch (step.kind) {
      case 'kill-leader':
        return this.kill(await this.leader(), 'leader');
      case 'kill-follower':
        return this.kill(await this.follower(step.pick), 'follower');
      case 'pause-leader':
        return this.pause(await this.leader(), 'leader');
      case 'pause-follower':
        return this.pause(await this.follower(step.pick), 'follower');
      case 'partition-majority':
        return this.partitionMajority(step.pick);
      case 'partition-leader':
        return this.isolate(await this.leader(), 'both');
      case 'partition-bridge':
        return this.partitionBridge(step.pick);
      case 'partition-one-way':
        return this.isolate(await this.leader(), 'one-way');
      case 'slow-links':
        return this.slowLinks(step.pick, step.delayMs);
      case 'member-replace':
        return this.replaceMember(step.pick);
      default:
        return assertNever(step.kind);
    }
  }

  private async leader(): Promise<number> {
    return this.cluster.leaderIndex(leaderLookupTimeoutMs);
  }

  private async follower(pick: number): Promise<number> {
    const leader = await this.leader().catch(() => -1);
    const candidates = this.cluster.runningIndexes().filter((i) => i !== leader);
    const chosen = candidates[Math.floor(pick * candidates.length)];
    if (chosen === undefined) throw new NemesisError('no running follower');
    return chosen;
  }

  private async kill(index: number, role: string): Promise<void> {
    this.killed.add(index);
    await this.cluster.kill(index);
    this.note(`kill -9 ${role} ${this.cluster.member(index).name}`);
    this.healers.push(async () => {
      await this.cluster.restart(index, { waitHealthy: false });
      this.killed.delete(index);
      this.note(`restarted ${this.cluster.member(index).name}`);
    });
  }

  private async pause(index: number, role: string): Promise<void> {
    this.cluster.pause(index);
    this.note(`SIGSTOP ${role} ${this.cluster.member(index).name}`);
    this.healers.push(async () => {
      this.cluster.resume(index);
      this.note(`SIGCONT ${this.cluster.member(index).name}`);
    });
  }

  /** Tells every member in `components` to drop the members of the other components. */
  private async partition(components: number[][], label: string, oneWay = false): Promise<void> {
    const ids = new Map<number, string>();
    for (const index of components.flat()) ids.set(index, memberIdHex(this.cluster.member(index).memberId));
    this.healers.push(() => this.clearFaults(components.flat()));
    const sides = oneWay ? components.slice(0, 1) : components;
    for (const side of sides) {
      const others = components.flat().filter((i) => !side.includes(i));
      for (const index of side) {
        const drop = others.map((i) => ids.get(i) as string);
        await this.retry(() => setPeerFaults(this.cluster.endpoint(index), { drop }));
      }
    }
    const names = components.map((c) => c.map((i) => this.cluster.member(i).name).join(','));
    this.note(`partition ${label} ${names.join(' | ')}`);
  }

  private async clearFaults(indexes: number[]): Promise<void> {
    for (const index of indexes) {
      if (this.cluster.member(index).state !== 'running') continue;
      await this.retry(() => setPeerFaults(this.cluster.endpoint(index), 'heal'));
    }
    this.note('links healed');
  }

  private shuffled(pick: number): number[] {
    const random = seededRandom(Math.floor(pick * 2 ** 32));
    const indexes = this.cluster.runningIndexes();
    for (let i = indexes.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [indexes[i], indexes[j]] = [indexes[j] as number, indexes[i] as number];
    }
    return indexes;
  }

  private async partitionMajority(pick: number): Promise<void> {
    const order = this.shuffled(pick);
    const majority = Math.floor(order.length / 2) + 1;
    await this.partition([order.slice(0, majority), order.slice(majority)], 'majority|minority');
  }

  /** The leader alone on one side. 'one-way': only the leader drops, the others are not told. */
  private async isolate(leader: number, how: 'both' | 'one-way'): Promise<void> {
    const rest = this.cluster.runningIndexes().filter((i) => i !== leader);
    await this.partition(
      [[leader], rest],
      how === 'both' ? 'isolated-leader' : 'one-way-leader',
      how === 'one-way',
    );
  }

  /** Two halves that only talk through one bridge member (a non-transitive partition). */
  private async partitionBridge(pick: number): Promise<void> {
    const order = this.shuffled(pick);
    const bridge = order[0] as number;
    const rest = order.slice(1);
    const left = rest.slice(0, Math.ceil(rest.length / 2));
    const right = rest.slice(Math.ceil(rest.length / 2));
    const ids = new Map(order.map((i) => [i, memberIdHex(this.cluster.member(i).memberId)]));
    this.healers.push(() => this.clearFaults(order));
    for (const [side, other] of [
      [left, right],
      [right, left],
    ] as const) {
      for (const index of side) {
        const drop = other.map((i) => ids.get(i) as string);
        await this.retry(() => setPeerFaults(this.cluster.endpoint(index), { drop }));
      }
    }
    const name = (i: number): string => this.cluster.member(i).name;
    this.note(
      `partition bridge ${left.map(name).join(',')} <-${name(bridge)}-> ${right.map(name).join(',')}`,
    );
  }

  /** Every message to or from a random minority of members is delayed by delayMs. */
  private async slowLinks(pick: number, delayMs: number): Promise<void> {
    const order = this.shuffled(pick);
    const slow = order.slice(0, Math.max(1, Math.floor(order.length / 2)));
    this.healers.push(() => this.clearFaults(slow));
    for (const index of slow) {
      await this.retry(() => setPeerFaults(this.cluster.endpoint(index), { drop: [], delayMs }));
    }
    this.note(`slow links ${delayMs}ms on ${slow.map((i) => this.cluster.member(i).name).join(',')}`);
  }

  /** Removes a follower through the Cluster API under load, then adds a fresh member. */
  private async replaceMember(pick: number): Promise<void> {
    const follower = await this.follower(pick);
    const name = this.cluster.member(follower).name;
    await this.cluster.removeMember(follower);
    this.note(`removed member ${name}`);
    // Waits until the new member serves: etcd refuses the next removal while it is not started.
    const added = await this.cluster.addMember({ waitHealthy: true });
    this.note(`added member ${this.cluster.member(added).name}`);
  }
}

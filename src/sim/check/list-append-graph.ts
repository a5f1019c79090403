// The dependency graph of the list-append checker and the cycle searches over it: Tarjan's
// strongly connected components on a subset of edge types, then a shortest cycle per component
// by breadth-first search. Nodes are dense integers; edges carry a bitmask of their types and,
// per type, the first reason seen (for the explanation).

export const EDGE_WW = 1;
export const EDGE_WR = 2;
export const EDGE_RW = 4;
export const EDGE_REALTIME = 8;
export const EDGE_PROCESS = 16;

export type EdgeType = 'ww' | 'wr' | 'rw' | 'realtime' | 'process';

export const EDGE_BITS: Readonly<Record<EdgeType, number>> = {
  ww: EDGE_WW,
  wr: EDGE_WR,
  rw: EDGE_RW,
  realtime: EDGE_REALTIME,
  process: EDGE_PROCESS,
};

/** Edge types in the order a cycle step prefers them: the weakest dependency that holds. */
const TYPE_PREFERENCE: readonly EdgeType[] = ['ww', 'wr', 'process', 'realtime', 'rw'];

interface EdgeInfo {
  mask: number;
  /** Built only when a cycle is explained: most edges never are. */
  reasons: Partial<Record<EdgeType, () => string>>;
}

export interface CycleStep {
  from: number;
  to: number;
  type: EdgeType;
  reason: string;
}

export class DependencyGraph {
  private readonly out: Map<number, EdgeInfo>[];

  constructor(readonly size: number) {
    this.out = Array.from({ length: size }, () => new Map<number, EdgeInfo>());
  }

  /** Adds from → to with `type`; the first reason given for that type is kept. */
  add(from: number, to: number, type: EdgeType, reason: () => string): void {
    if (from === to) return;
    const edges = this.out[from]!;
    let info = edges.get(to);
    if (info === undefined) edges.set(to, (info = { mask: 0, reasons: {} }));
    const bit = EDGE_BITS[type];
    if ((info.mask & bit) !== 0) return;
    info.mask |= bit;
    info.reasons[type] = reason;
  }

  get edgeCount(): number {
    let count = 0;
    for (const edges of this.out) count += edges.size;
    return count;
  }

  /** Strongly connected components of more than one node, over edges whose mask meets `allowed`. */
  components(allowed: number): number[][] {
    const index = new Int32Array(this.size).fill(-1);
    const low = new Int32Array(this.size);
    const onStack = new Uint8Array(this.size);
    const stack: number[] = [];
    const found: number[][] = [];
    let next = 0;
    // Iterative Tarjan: a frame is (node, iterator over its successors).
    for (let root = 0; root < this.size; root++) {
      if (index[root] !== -1) continue;
      const frames: Array<{ node: number; successors: Iterator<[number, EdgeInfo]> }> = [];
      const open = (node: number): void => {
        index[node] = low[node] = next++;
        stack.push(node);
        onStack[node] = 1;
        frames.push({ node, successors: this.out[node]!.entries() });
      };
      open(root);
      while (frames.length > 0) {
        const frame = frames[frames.length - 1]!;
        const step = frame.successors.next();
        if (!step.done) {
          const [to, info] = step.value;
          if ((info.mask & allowed) === 0) continue;
          if (index[to] === -1) open(to);
          else if (onStack[to] === 1) low[frame.node] = Math.min(low[frame.node]!, index[to]!);
          continue;
        }
        frames.pop();
        const parent = frames[frames.length - 1];
        if (parent !== undefined) low[parent.node] = Math.min(low[parent.node]!, low[frame.node]!);
        if (low[frame.node] !== index[frame.node]) continue;
        const component: number[] = [];
        let member: number;
        do {
          member = stack.pop()!;
          onStack[member] = 0;
          component.push(member);
        } while (member !== frame.node);
        if (component.length > 1) found.push(component);
      }
    }
    return found;
  }

  /**
   * Shortest path from `source` to `target` inside `within`, over edges meeting `allowed`, as
   * the node list [source, ..., target]; undefined when there is none.
   */
  shortestPath(source: number, target: number, allowed: number, within: Set<number>): number[] | undefined {
    const parent = new Map<number, number>([[source, -1]]);
    let frontier = [source];
    while (frontier.length > 0) {
      const nextFrontier: number[] = [];
      for (const node of frontier) {
        for (const [to, info] of this.out[node]!) {
          if ((info.mask & allowed) === 0 || !within.has(to) || parent.has(to)) continue;
          parent.set(to, node);
          if (to === target) return unwind(parent, target);
          nextFrontier.push(to);
        }
      }
      frontier = nextFrontier;
    }
    return undefined;
  }

  /** A cycle through `start` over edges meeting `allowed`, as nodes [start, ..., start]. */
  cycleThrough(start: number, allowed: number, within: Set<number>): number[] | undefined {
    let best: number[] | undefined;
    for (const [to, info] of this.out[start]!) {
      if ((info.mask & allowed) === 0 || !within.has(to)) continue;
      const back = to === start ? [start] : this.shortestPath(to, start, allowed, within);
      if (back !== undefined && (best === undefined || back.length + 1 < best.length))
        best = [start, ...back];
    }
    return best;
  }

  /** Describes the edge from → to by its weakest type within `allowed` (or `forced`). */
  step(from: number, to: number, allowed: number, forced?: EdgeType): CycleStep {
    const info = this.out[from]!.get(to);
    if (info === undefined) throw new Error(`no edge ${from} → ${to}`);
    const type = forced ?? TYPE_PREFERENCE.find((t) => (info.mask & allowed & EDGE_BITS[t]) !== 0);
    if (type === undefined) throw new Error(`edge ${from} → ${to} has no allowed type`);
    return { from, to, type, reason: info.reasons[type]?.() ?? '' };
  }

  /** Whether from → to exists with one of the types in `mask`. */
  has(from: number, to: number, mask: number): boolean {
    return ((this.out[from]!.get(to)?.mask ?? 0) & mask) !== 0;
  }

  /** Edges from → to with the `rw` type among `within`. */
  *edgesOfType(nodes: readonly number[], bit: number, within: Set<number>): Generator<[number, number]> {
    for (const from of nodes) {
      for (const [to, info] of this.out[from]!) {
        if ((info.mask & bit) !== 0 && within.has(to)) yield [from, to];
      }
    }
  }
}

function unwind(parent: Map<number, number>, target: number): number[] {
  const path: number[] = [];
  for (let node = target; node !== -1; node = parent.get(node)!) path.push(node);
  return path.reverse();
}

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
  private compacted: { offsets: Int32Array; targets: Int32Array; masks: Uint8Array } | undefined;

  constructor(readonly size: number) {
    this.out = Array.from({ length: size }, () => new Map<number, EdgeInfo>());
  }

  /** Adds from → to with `type`; the first reason given for that type is kept. */
  add(from: number, to: number, type: EdgeType, reason: () => string): void {
    if (from === to) return;
    this.compacted = undefined;
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

  /** The edges as flat arrays (CSR), built once the graph is complete, for the SCC passes. */
  private compact(): { offsets: Int32Array; targets: Int32Array; masks: Uint8Array } {
    if (this.compacted !== undefined) return this.compacted;
    const offsets = new Int32Array(this.size + 1);
    for (let node = 0; node < this.size; node++) offsets[node + 1] = offsets[node]! + this.out[node]!.size;
    const targets = new Int32Array(offsets[this.size]!);
    const masks = new Uint8Array(offsets[this.size]!);
    for (let node = 0; node < this.size; node++) {
      let at = offsets[node]!;
      for (const [to, info] of this.out[node]!) {
        targets[at] = to;
        masks[at++] = info.mask;
      }
    }
    this.compacted = { offsets, targets, masks };
    return this.compacted;
  }

  /** Strongly connected components of more than one node, over edges whose mask meets `allowed`. */
  components(allowed: number): number[][] {
    const { offsets, targets, masks } = this.compact();
    const index = new Int32Array(this.size).fill(-1);
    const low = new Int32Array(this.size);
    const onStack = new Uint8Array(this.size);
    /** Per node on the call stack: the next edge to look at. */
    const nextEdge = new Int32Array(this.size);
    const stack: number[] = [];
    const calls: number[] = [];
    const found: number[][] = [];
    let next = 0;
    const open = (node: number): void => {
      index[node] = low[node] = next++;
      nextEdge[node] = offsets[node]!;
      stack.push(node);
      onStack[node] = 1;
      calls.push(node);
    };
    // Iterative Tarjan: `calls` is the recursion stack.
    for (let root = 0; root < this.size; root++) {
      if (index[root] !== -1) continue;
      open(root);
      while (calls.length > 0) {
        const node = calls[calls.length - 1]!;
        const edge = nextEdge[node]!;
        if (edge < offsets[node + 1]!) {
          nextEdge[node] = edge + 1;
          if ((masks[edge]! & allowed) === 0) continue;
          const to = targets[edge]!;
          if (index[to] === -1) open(to);
          else if (onStack[to] === 1 && index[to]! < low[node]!) low[node] = index[to]!;
          continue;
        }
        calls.pop();
        const parent = calls[calls.length - 1];
        if (parent !== undefined && low[node]! < low[parent]!) low[parent] = low[node]!;
        if (low[node] !== index[node]) continue;
        const component: number[] = [];
        let member: number;
        do {
          member = stack.pop()!;
          onStack[member] = 0;
          component.push(member);
        } while (member !== node);
        if (component.length > 1) found.push(component);
      }
    }
    return found;
  }

  /**
   * Shortest path from `source` to `target` inside `within`, over edges meeting `allowed`, as
   * the node list [source, ..., target]; undefined when there is none. With source = target it
   * is the shortest cycle through it.
   */
  shortestPath(source: number, target: number, allowed: number, within: Set<number>): number[] | undefined {
    // Parents of reached nodes; the source counts as reached only when it is not the target.
    const parent = new Map<number, number>();
    if (source !== target) parent.set(source, -1);
    let frontier = [source];
    while (frontier.length > 0) {
      const nextFrontier: number[] = [];
      for (const node of frontier) {
        for (const [to, info] of this.out[node]!) {
          if ((info.mask & allowed) === 0 || !within.has(to) || parent.has(to)) continue;
          parent.set(to, node);
          if (to === target) return unwind(parent, source, target);
          nextFrontier.push(to);
        }
      }
      frontier = nextFrontier;
    }
    return undefined;
  }

  /** The shortest cycle through `start` over edges meeting `allowed`, as nodes [start, ..., start]. */
  cycleThrough(start: number, allowed: number, within: Set<number>): number[] | undefined {
    return this.shortestPath(start, start, allowed, within);
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

function unwind(parent: Map<number, number>, source: number, target: number): number[] {
  const path = [target];
  let node = parent.get(target)!;
  while (node !== source) {
    path.push(node);
    node = parent.get(node)!;
  }
  path.push(source);
  return path.reverse();
}

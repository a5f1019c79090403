// Serializability of multi-key transactions, checked the way Elle does it on list-append
// histories (Kingsbury & Alvaro, "Elle: Inferring Isolation Anomalies from Experimental
// Observations", VLDB 2020). Each transaction is a list of micro-ops: read a key's whole list,
// or append a value to it; values are unique per key. Because lists only grow, every read
// reveals a prefix of its key's version order, so the longest read gives the order, and each
// read pins where its transaction sits in it. From that: ww (next append), wr (read a list
// ending in that append) and rw (read a list the next append was not yet in) dependencies,
// plus real-time order (strict serializability) and optionally per-client order. A cycle is an
// anomaly, classified by Adya's taxonomy:
//   G0: ww edges only (dirty write)           G1c: ww and wr (circular information flow)
//   G-single: exactly one rw (read skew)      G2: two or more rw (write skew / anti-dependency cycle)
// with a _REALTIME suffix when the cycle needs real-time or client order. Besides cycles:
// G1a (read an append of a transaction that failed), G1b (read an intermediate append: the
// writer appended to the same key again later), garbage reads (values nobody appended),
// duplicate elements, reads no single order explains, and transactions that do not see their
// own appends.
//
// Outcomes: 'ok' transactions happened; 'fail' ones did not (their appends must never be
// read); 'unknown' ones may or may not have: one is placed in the graph only when some read
// saw one of its appends (then it happened), and its own reads, which nobody saw, add nothing.

import {
  formatInterval,
  formatProcess,
  type History,
  HistoryFormatError,
  type Operation,
  validateHistory,
} from './history.js';
import {
  type CycleStep,
  DependencyGraph,
  EDGE_PROCESS,
  EDGE_REALTIME,
  EDGE_RW,
  EDGE_WR,
  EDGE_WW,
  type EdgeType,
} from './list-append-graph.js';
import { type AnomalyCode, AnomalyCollector, type Verdict } from './verdict.js';

export type ListElement = number | string;

/** One micro-op. A read's value is null in the input and the list it saw in an ok output. */
export type ListAppendMop =
  | { readonly f: 'r'; readonly key: string; readonly value: readonly ListElement[] | null }
  | { readonly f: 'append'; readonly key: string; readonly value: ListElement };

/** kind 'txn'; input: the micro-ops asked for; output (ok only): the same with reads filled. */
export type ListAppendOp = Operation<readonly ListAppendMop[], readonly ListAppendMop[]>;

export interface ListAppendOptions {
  /** Real-time edges (an op that completed before another was invoked precedes it): strict serializability. Default true. */
  realtime?: boolean;
  /** Edges from each ok op to the next op of the same client. Default false. */
  processOrder?: boolean;
  /** Bound on the rw edges tried per component when looking for a G-single cycle. */
  gSingleTriesMax?: number;
}

export type CycleClass = 'G0' | 'G1c' | 'G-single' | 'G2';

export interface ListAppendCycle {
  class: CycleClass;
  /** The cycle needs real-time or client order (violates strict, not plain, serializability). */
  realtime: boolean;
  /** History op ids around the cycle, first repeated at the end. */
  opIds: number[];
  steps: Array<{ fromOpId: number; toOpId: number; type: EdgeType; reason: string }>;
}

export interface ListAppendVerdict extends Verdict {
  /** Transactions in the dependency graph (ok ones and unknown ones seen to happen). */
  txnsChecked: number;
  edges: number;
  cycles: ListAppendCycle[];
}

const gSingleTriesMaxDefault = 2000;
const gSingleTriesAfterFound = 100;

interface AppendSite {
  op: ListAppendOp;
  mopIndex: number;
}

interface ReadSite {
  op: ListAppendOp;
  mopIndex: number;
  list: readonly ListElement[];
  /** Length of the prefix written by other transactions (trailing own appends removed). */
  externalLength: number;
}

interface KeyOrder {
  order: readonly ListElement[];
  /** The read whose list is the order. */
  longest: ReadSite | undefined;
}

function mopsOf(op: ListAppendOp): readonly ListAppendMop[] {
  const mops = op.status === 'ok' ? op.output : op.input;
  if (!Array.isArray(mops)) {
    throw new HistoryFormatError(
      'HISTORY_BAD_OPERATION',
      'txn input/output must be an array of micro-ops',
      op.id,
    );
  }
  if (op.status === 'ok' && mops.length !== op.input.length) {
    throw new HistoryFormatError(
      'HISTORY_BAD_OPERATION',
      'txn output must have one micro-op per input',
      op.id,
    );
  }
  return mops;
}

function describeMop(mop: ListAppendMop): string {
  if (mop.f === 'append') return `append ${mop.key} ${JSON.stringify(mop.value)}`;
  return `r ${mop.key} ${mop.value === null ? '?' : listText(mop.value)}`;
}

/** A transaction's name in explanations: T and its history op id. */
function txnName(op: ListAppendOp | undefined): string {
  return op === undefined ? 'nobody' : `T${op.id}`;
}

function describeTxn(op: ListAppendOp): string {
  const mops = op.status === 'ok' ? (op.output ?? op.input) : op.input;
  return `op ${op.id} (${formatProcess(op.process)}, ${op.status}, ${formatInterval(op)}): [${mops.map(describeMop).join('] [')}]`;
}

/** Elements shown at the end of a long list; the rest is counted, not printed. */
const listTailShown = 6;

function listText(list: readonly ListElement[]): string {
  const shown = list.length > listTailShown + 2 ? list.slice(-listTailShown) : list;
  const elided = list.length - shown.length;
  return `[${elided > 0 ? `…${elided} more… ` : ''}${shown.map((v) => JSON.stringify(v)).join(' ')}]`;
}

/** Where two lists part: "at position 3: 7 vs 9", with the common part's tail. */
function divergence(a: readonly ListElement[], b: readonly ListElement[]): string {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const show = (list: readonly ListElement[]): string =>
    i < list.length ? JSON.stringify(list[i]) : 'the end';
  return `after the common prefix ${listText(a.slice(0, i))} one has ${show(a)} at position ${i}, the other ${show(b)}`;
}

/** Everything the checker derives from the history before building the graph. */
class Facts {
  readonly txns: ListAppendOp[] = [];
  readonly appends = new Map<string, Map<ListElement, AppendSite>>();
  readonly reads = new Map<string, ReadSite[]>();
  readonly orders = new Map<string, KeyOrder>();
  /** Ops in the graph: ok ones, and unknown ones whose appends were read. */
  readonly nodeOf = new Map<number, number>();
  readonly opOfNode: ListAppendOp[] = [];

  constructor(
    history: History,
    readonly anomalies: AnomalyCollector,
  ) {
    validateHistory(history);
    for (const op of history as readonly ListAppendOp[]) if (op.kind === 'txn') this.txns.push(op);
    for (const op of this.txns) this.indexAppends(op);
    for (const op of this.txns) if (op.status === 'ok') this.indexReads(op);
  }

  private indexAppends(op: ListAppendOp): void {
    mopsOf(op).forEach((mop, mopIndex) => {
      if (mop.f !== 'append') return;
      let byValue = this.appends.get(mop.key);
      if (byValue === undefined) this.appends.set(mop.key, (byValue = new Map()));
      const earlier = byValue.get(mop.value);
      if (earlier !== undefined) {
        throw new HistoryFormatError(
          'HISTORY_BAD_OPERATION',
          `value ${JSON.stringify(mop.value)} appended to ${mop.key} twice (also by op ${earlier.op.id}); values must be unique per key`,
          op.id,
        );
      }
      byValue.set(mop.value, { op, mopIndex });
    });
  }

  private indexReads(op: ListAppendOp): void {
    const mops = mopsOf(op);
    const ownSoFar = new Map<string, ListElement[]>();
    const readSoFar = new Map<string, readonly ListElement[]>();
    mops.forEach((mop, mopIndex) => {
      if (mop.f === 'append') {
        const own = ownSoFar.get(mop.key) ?? [];
        own.push(mop.value);
        ownSoFar.set(mop.key, own);
        return;
      }
      if (!Array.isArray(mop.value)) {
        throw new HistoryFormatError('HISTORY_BAD_OPERATION', `ok read of ${mop.key} has no list`, op.id);
      }
      const list = mop.value;
      const own = ownSoFar.get(mop.key) ?? [];
      this.checkInternal(op, mop.key, list, readSoFar.get(mop.key), own);
      readSoFar.set(mop.key, list);
      ownSoFar.set(mop.key, []);
      let externalLength = list.length;
      while (externalLength > 0 && this.appends.get(mop.key)?.get(list[externalLength - 1]!)?.op === op) {
        externalLength--;
      }
      let sites = this.reads.get(mop.key);
      if (sites === undefined) this.reads.set(mop.key, (sites = []));
      sites.push({ op, mopIndex, list, externalLength });
    });
  }

  /** A transaction sees its own earlier reads and appends: nothing else can come in between. */
  private checkInternal(
    op: ListAppendOp,
    key: string,
    list: readonly ListElement[],
    earlierRead: readonly ListElement[] | undefined,
    ownSinceRead: readonly ListElement[],
  ): void {
    const expectedTail = ownSinceRead;
    const expected = earlierRead === undefined ? undefined : [...earlierRead, ...ownSinceRead];
    const tailOk =
      list.length >= expectedTail.length &&
      expectedTail.every((v, i) => list[list.length - expectedTail.length + i] === v);
    const wholeOk =
      expected === undefined || (expected.length === list.length && expected.every((v, i) => list[i] === v));
    if (tailOk && wholeOk) return;
    const wanted = expected === undefined ? `a list ending in ${listText(expectedTail)}` : listText(expected);
    this.anomalies.add({
      code: 'LIST_APPEND_INTERNAL',
      subject: key,
      opIds: [op.id],
      message: `${describeTxn(op)} read ${key} = ${listText(list)} but its own earlier micro-ops imply ${wanted}`,
    });
  }

  /** Per key: the version order, from the longest read; reports what no order explains. */
  inferOrders(): void {
    const keys = new Set([...this.appends.keys(), ...this.reads.keys()]);
    for (const key of keys) {
      const sites = this.reads.get(key) ?? [];
      let longest: ReadSite | undefined;
      for (const site of sites)
        if (longest === undefined || site.list.length > longest.list.length) longest = site;
      const order = longest === undefined ? [] : dedupe(longest.list);
      const position = new Map(order.map((v, i) => [v, i]));
      this.orders.set(key, { order, longest });
      for (const site of sites) {
        this.checkElements(key, site);
        if (longest !== undefined && site !== longest && !isPrefix(site.list, order, position)) {
          this.anomalies.add({
            code: 'LIST_APPEND_INCOMPATIBLE_ORDER',
            subject: key,
            opIds: [site.op.id, longest.op.id],
            message: `no single order of ${key} explains both ${describeTxn(site.op)} reading ${listText(site.list)} and ${describeTxn(longest.op)} reading ${listText(longest.list)}: neither is a prefix of the other (${divergence(site.list, longest.list)})`,
          });
        }
      }
    }
  }

  private checkElements(key: string, site: ReadSite): void {
    const seen = new Set<ListElement>();
    const byValue = this.appends.get(key);
    const where = (): string => `${describeTxn(site.op)} read ${key} = ${listText(site.list)}`;
    site.list.forEach((value, i) => {
      if (seen.has(value)) {
        this.add(
          'LIST_APPEND_DUPLICATE_ELEMENT',
          key,
          [site.op.id],
          `${where()}, which holds ${JSON.stringify(value)} twice`,
        );
      }
      seen.add(value);
      const append = byValue?.get(value);
      if (append === undefined) {
        this.add(
          'LIST_APPEND_GARBAGE_READ',
          key,
          [site.op.id],
          `${where()}, but no transaction appended ${JSON.stringify(value)} to ${key}`,
        );
        return;
      }
      if (append.op.status === 'fail') {
        this.add(
          'LIST_APPEND_G1A',
          key,
          [site.op.id, append.op.id],
          `aborted read: ${where()}, but ${JSON.stringify(value)} was appended by ${describeTxn(append.op)}, which failed (certainly did not commit)`,
        );
      }
      if (i === site.list.length - 1 && append.op !== site.op) this.checkIntermediate(key, site, append);
    });
  }

  private checkIntermediate(key: string, site: ReadSite, append: AppendSite): void {
    const later = mopsOf(append.op)
      .slice(append.mopIndex + 1)
      .find((mop) => mop.f === 'append' && mop.key === key);
    if (later === undefined) return;
    this.add(
      'LIST_APPEND_G1B',
      key,
      [site.op.id, append.op.id],
      `intermediate read: ${describeTxn(site.op)} read ${key} = ${listText(site.list)}, ending in ${JSON.stringify(site.list[site.list.length - 1])}, but ${describeTxn(append.op)} appended ${JSON.stringify(later.value)} to ${key} after it in the same transaction`,
    );
  }

  private add(code: AnomalyCode, subject: string, opIds: number[], message: string): void {
    this.anomalies.add({ code, subject, opIds, message });
  }

  /** ok transactions, plus unknown ones some read proves happened. */
  chooseNodes(): void {
    const observed = new Set<ListAppendOp>();
    for (const [key, { order }] of this.orders) {
      for (const value of order) {
        const op = this.appends.get(key)?.get(value)?.op;
        if (op !== undefined && op.status === 'unknown') observed.add(op);
      }
    }
    for (const op of this.txns) {
      if (op.status === 'ok' || observed.has(op)) {
        this.nodeOf.set(op.id, this.opOfNode.length);
        this.opOfNode.push(op);
      }
    }
  }
}

function dedupe(list: readonly ListElement[]): ListElement[] {
  return [...new Set(list)];
}

function isPrefix(
  list: readonly ListElement[],
  order: readonly ListElement[],
  position: Map<ListElement, number>,
): boolean {
  if (list.length > order.length) return false;
  if (list.length > 0 && position.get(list[list.length - 1]!) !== list.length - 1) return false;
  return list.every((v, i) => order[i] === v);
}

function buildGraph(facts: Facts, options: ListAppendOptions): DependencyGraph {
  const graph = new DependencyGraph(facts.opOfNode.length);
  for (const [key, keyOrder] of facts.orders) addDataEdges(facts, graph, key, keyOrder);
  if (options.realtime ?? true) addRealtimeEdges(facts, graph);
  if (options.processOrder ?? false) addProcessEdges(facts, graph);
  return graph;
}

function addDataEdges(facts: Facts, graph: DependencyGraph, key: string, { order }: KeyOrder): void {
  const byValue = facts.appends.get(key) ?? new Map<ListElement, AppendSite>();
  const writerOp = (value: ListElement | undefined): ListAppendOp | undefined =>
    value === undefined ? undefined : byValue.get(value)?.op;
  const writers = order.map((value) => {
    const op = writerOp(value);
    return op === undefined ? undefined : facts.nodeOf.get(op.id);
  });
  const t = (value: ListElement | undefined): string => txnName(writerOp(value));
  const v = (value: ListElement | undefined): string => JSON.stringify(value);
  for (let i = 0; i + 1 < order.length; i++) {
    const [from, to] = [writers[i], writers[i + 1]];
    if (from === undefined || to === undefined) continue;
    graph.add(
      from,
      to,
      'ww',
      () =>
        `${t(order[i])} appended ${v(order[i])} to ${key}, and ${t(order[i + 1])} appended ${v(order[i + 1])} right after it`,
    );
  }
  // Acknowledged appends no read saw come after everything a read saw: those reads were serialized before them.
  const inOrder = new Set(order);
  const unobserved = [...byValue].filter(([value, site]) => site.op.status === 'ok' && !inOrder.has(value));
  const last = writers[writers.length - 1];
  for (const [value, site] of unobserved) {
    if (last === undefined) continue;
    graph.add(
      last,
      facts.nodeOf.get(site.op.id)!,
      'ww',
      () =>
        `${t(order[order.length - 1])} appended ${v(order[order.length - 1])} to ${key}, the last element any read saw, and ${txnName(site.op)}'s acknowledged append of ${v(value)} was never read, so it came later`,
    );
  }
  for (const site of facts.reads.get(key) ?? []) {
    const reader = facts.nodeOf.get(site.op.id)!;
    const length = site.externalLength;
    // A read no single order explains is reported already and gives no edges.
    if (length > order.length || !site.list.slice(0, length).every((value, i) => order[i] === value))
      continue;
    const seen = listText(site.list.slice(0, length));
    if (length > 0) {
      const from = writers[length - 1];
      if (from !== undefined) {
        graph.add(
          from,
          reader,
          'wr',
          () =>
            `${txnName(site.op)} read ${key} = ${seen}, which ends with ${t(order[length - 1])}'s append of ${v(order[length - 1])}`,
        );
      }
    }
    if (length < order.length) {
      const to = writers[length];
      if (to !== undefined) {
        graph.add(
          reader,
          to,
          'rw',
          () =>
            `${txnName(site.op)} read ${key} = ${seen}, which lacks ${t(order[length])}'s append of ${v(order[length])}, the next element of ${key}`,
        );
      }
      continue;
    }
    for (const [value, appendSite] of unobserved) {
      graph.add(
        reader,
        facts.nodeOf.get(appendSite.op.id)!,
        'rw',
        () =>
          `${txnName(site.op)} read ${key} = ${seen}, which lacks ${txnName(appendSite.op)}'s acknowledged append of ${v(value)}`,
      );
    }
  }
}

/**
 * Real-time order without the quadratic edge set: a frontier of completed ops none of which is
 * known to precede another; each invocation gets edges from the frontier, and a completion
 * evicts the frontier ops that completed before it was invoked (they reach it through an edge
 * already added). Invocations come before completions at equal times: touching intervals are
 * concurrent.
 */
function addRealtimeEdges(facts: Facts, graph: DependencyGraph): void {
  const events: Array<{ time: number; node: number; invoke: boolean }> = [];
  facts.opOfNode.forEach((op, node) => {
    events.push({ time: op.invokeTime, node, invoke: true });
    if (op.status === 'ok') events.push({ time: op.completeTime!, node, invoke: false });
  });
  events.sort((a, b) => a.time - b.time || Number(b.invoke) - Number(a.invoke));
  let frontier: number[] = [];
  for (const event of events) {
    const op = facts.opOfNode[event.node]!;
    if (event.invoke) {
      for (const from of frontier) {
        const before = facts.opOfNode[from]!;
        graph.add(
          from,
          event.node,
          'realtime',
          () =>
            `${txnName(before)} completed at ${before.completeTime}, before ${txnName(op)} was invoked at ${op.invokeTime}`,
        );
      }
      continue;
    }
    frontier = frontier.filter((f) => facts.opOfNode[f]!.completeTime! >= op.invokeTime);
    frontier.push(event.node);
  }
}

function addProcessEdges(facts: Facts, graph: DependencyGraph): void {
  const lastOf = new Map<string, ListAppendOp>();
  const ops = [...facts.txns].sort((a, b) => a.invokeTime - b.invokeTime);
  for (const op of ops) {
    const processKey = String(op.process);
    const previous = lastOf.get(processKey);
    lastOf.set(processKey, op);
    if (previous === undefined || previous.status !== 'ok') continue;
    const [from, to] = [facts.nodeOf.get(previous.id), facts.nodeOf.get(op.id)];
    if (from === undefined || to === undefined) continue;
    graph.add(
      from,
      to,
      'process',
      () =>
        `${txnName(previous)} is the op ${formatProcess(op.process)} completed before invoking ${txnName(op)}`,
    );
  }
}

interface SearchPhase {
  cls: CycleClass;
  realtime: boolean;
  /** Edge types a cycle may use (rw excluded for the G-single phases, which add one). */
  allowed: number;
  oneRw: boolean;
}

const ORDER_BITS = EDGE_REALTIME | EDGE_PROCESS;

const PHASES: readonly SearchPhase[] = [false, true].flatMap((realtime) => {
  const extra = realtime ? ORDER_BITS : 0;
  return [
    { cls: 'G0', realtime, allowed: EDGE_WW | extra, oneRw: false },
    { cls: 'G1c', realtime, allowed: EDGE_WW | EDGE_WR | extra, oneRw: false },
    { cls: 'G-single', realtime, allowed: EDGE_WW | EDGE_WR | extra, oneRw: true },
    { cls: 'G2', realtime, allowed: EDGE_WW | EDGE_WR | EDGE_RW | extra, oneRw: false },
  ] satisfies SearchPhase[];
});

function classify(steps: readonly CycleStep[]): { cls: CycleClass; realtime: boolean } {
  const rw = steps.filter((s) => s.type === 'rw').length;
  const realtime = steps.some((s) => s.type === 'realtime' || s.type === 'process');
  if (rw >= 2) return { cls: 'G2', realtime };
  if (rw === 1) return { cls: 'G-single', realtime };
  return { cls: steps.some((s) => s.type === 'wr') ? 'G1c' : 'G0', realtime };
}

function stepsOf(
  graph: DependencyGraph,
  nodes: readonly number[],
  allowed: number,
  firstType?: EdgeType,
): CycleStep[] {
  const steps: CycleStep[] = [];
  for (let i = 0; i + 1 < nodes.length; i++) {
    steps.push(graph.step(nodes[i]!, nodes[i + 1]!, allowed, i === 0 ? firstType : undefined));
  }
  return steps;
}

/** The shortest cycle in `component` the phase may report, or undefined. */
function searchComponent(
  graph: DependencyGraph,
  component: readonly number[],
  phase: SearchPhase,
  triesMax: number,
): CycleStep[] | undefined {
  const within = new Set(component);
  let best: CycleStep[] | undefined;
  const consider = (steps: CycleStep[]): void => {
    const { cls, realtime } = classify(steps);
    if (cls !== phase.cls || realtime !== phase.realtime) return;
    if (best === undefined || steps.length < best.length) best = steps;
  };
  if (phase.oneRw) {
    let tries = 0;
    let triesSinceFound = 0;
    for (const [from, to] of graph.edgesOfType(component, EDGE_RW, within)) {
      if (tries++ >= triesMax) break;
      // Once one cycle is found, a few more tries look for a shorter one; not all of them.
      if (best !== undefined && triesSinceFound++ >= gSingleTriesAfterFound) break;
      const back = graph.shortestPath(to, from, phase.allowed, within);
      if (back !== undefined) consider(stepsOf(graph, [from, ...back], phase.allowed, 'rw'));
    }
    return best;
  }
  // Cycles through a few start nodes; the first component member is enough for a small component.
  for (const start of component.slice(0, 8)) {
    const nodes = graph.cycleThrough(start, phase.allowed, within);
    if (nodes !== undefined) consider(stepsOf(graph, nodes, phase.allowed));
  }
  return best;
}

function codeOf(cls: CycleClass, realtime: boolean): AnomalyCode {
  const base = { G0: 'G0', G1c: 'G1C', 'G-single': 'G_SINGLE', G2: 'G2' }[cls];
  return `LIST_APPEND_${base}${realtime ? '_REALTIME' : ''}` as AnomalyCode;
}

const CLASS_MEANING: Readonly<Record<CycleClass, string>> = {
  G0: 'write cycle (dirty write): ww dependencies only',
  G1c: 'circular information flow: ww and wr dependencies',
  'G-single': 'read skew: a cycle with exactly one anti-dependency (rw)',
  G2: 'anti-dependency cycle (write skew): two or more rw dependencies',
};

function explainCycle(facts: Facts, steps: readonly CycleStep[], cls: CycleClass, realtime: boolean): string {
  const ops = steps.map((s) => facts.opOfNode[s.from]!);
  const order = realtime ? ', closed by real-time or client order (violates strict serializability)' : '';
  return [
    `${cls}${realtime ? '-realtime' : ''}: ${CLASS_MEANING[cls]}${order}. Let`,
    ...ops.map((op) => `  ${txnName(op)} = ${describeTxn(op)}`),
    'Then',
    ...steps.map(
      (s) =>
        `  ${txnName(facts.opOfNode[s.from])} < ${txnName(facts.opOfNode[s.to])} (${s.type}): ${s.reason}`,
    ),
    `so ${txnName(ops[0])} < ${txnName(ops[0])}: no serial order exists.`,
  ].join('\n');
}

function findCycles(facts: Facts, graph: DependencyGraph, options: ListAppendOptions): ListAppendCycle[] {
  const cycles: ListAppendCycle[] = [];
  const triesMax = options.gSingleTriesMax ?? gSingleTriesMaxDefault;
  const reported = new Set<string>();
  // Every phase searches a subgraph: without a cycle in the whole graph (the common case, a
  // valid history) or in its data edges, the phases over it have nothing to find.
  const dataBits = EDGE_WW | EDGE_WR | EDGE_RW;
  if (graph.components(dataBits | ORDER_BITS).length === 0) return cycles;
  const dataCyclic = graph.components(dataBits).length > 0;
  for (const phase of PHASES) {
    if (!phase.realtime && !dataCyclic) continue;
    const searchBits = phase.oneRw ? phase.allowed | EDGE_RW : phase.allowed;
    for (const component of graph.components(searchBits)) {
      const steps = searchComponent(graph, component, phase, triesMax);
      if (steps === undefined) continue;
      const signature = steps
        .map((s) => s.from)
        .sort((a, b) => a - b)
        .join(',');
      if (reported.has(signature)) continue;
      reported.add(signature);
      const opIds = [...steps.map((s) => facts.opOfNode[s.from]!.id), facts.opOfNode[steps[0]!.from]!.id];
      const cycle: ListAppendCycle = {
        class: phase.cls,
        realtime: phase.realtime,
        opIds,
        steps: steps.map((s) => ({
          fromOpId: facts.opOfNode[s.from]!.id,
          toOpId: facts.opOfNode[s.to]!.id,
          type: s.type,
          reason: s.reason,
        })),
      };
      cycles.push(cycle);
      facts.anomalies.add({
        code: codeOf(phase.cls, phase.realtime),
        subject: `ops ${opIds.join(' → ')}`,
        opIds: opIds.slice(0, -1),
        message: explainCycle(facts, steps, phase.cls, phase.realtime),
      });
    }
  }
  return cycles;
}

/**
 * Checks a list-append history for serializability (and, with `realtime`, the default, strict
 * serializability). Only ops of kind 'txn' are read. Pure and deterministic.
 */
export function checkListAppend(history: History, options: ListAppendOptions = {}): ListAppendVerdict {
  const anomalies = new AnomalyCollector();
  const facts = new Facts(history, anomalies);
  facts.inferOrders();
  facts.chooseNodes();
  const graph = buildGraph(facts, options);
  const cycles = findCycles(facts, graph, options);
  const mode = (options.realtime ?? true) ? 'strict serializability' : 'serializability';
  const verdict = anomalies.toVerdict(
    'list-append',
    `${facts.opOfNode.length} transactions over ${facts.orders.size} keys, ${graph.edgeCount} dependency edges, no cycle (${mode}).`,
  );
  return { ...verdict, txnsChecked: facts.opOfNode.length, edges: graph.edgeCount, cycles };
}

// What the side-by-side comparisons (bench:vs-etcd and its --engines and --security modes) print:
// one measured workload, tables as text or Markdown, ratios, CPU per operation.

import type { ProfileWindow } from './cpu-profile.js';
import { formatMs } from './report.js';
import type { BenchResult } from './run.js';

export interface Measured {
  result: BenchResult;
  /** Server CPU over the measured loop, % of one core: the leader's, and all members' summed. */
  leaderCpuPercent: number;
  clusterCpuPercent: number;
  /** The measured loop in CLOCK_MONOTONIC µs (to cut a CPU profile to it). */
  window: ProfileWindow;
}

export function renderTable(header: string[], rows: string[][], markdown: boolean): string {
  if (markdown) {
    const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
    return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
  }
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** `numerator / denominator` as `0.25x`; n/a when the denominator measured nothing. */
export function ratio(numerator: number, denominator: number): string {
  return denominator > 0 ? `${(numerator / denominator).toFixed(2)}x` : 'n/a';
}

/** CPU milliseconds all members spent per operation over the measured loop. */
export function cpuMsPerOp(measured: Measured): number {
  const cpuMs = (measured.clusterCpuPercent / 100) * measured.result.durationSec * 1000;
  return measured.result.ops > 0 ? cpuMs / measured.result.ops : 0;
}

export function p50p99(result: BenchResult): string {
  return `${formatMs(result.latencyMs.p50)} / ${formatMs(result.latencyMs.p99)} ms`;
}

export function errorsNote(result: BenchResult): string {
  return result.errors > 0 ? ` (${result.errors} errors)` : '';
}

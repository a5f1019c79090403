// The human-readable report of one run (the --json form is the BenchResult itself).

import type { BenchResult } from './run.js';

const histogramBarWidth = 40;

export function formatMs(ms: number): string {
  if (ms >= 100) return ms.toFixed(0);
  if (ms >= 10) return ms.toFixed(1);
  if (ms >= 1) return ms.toFixed(2);
  return ms.toFixed(3);
}

export function formatReport(result: BenchResult): string {
  const lines: string[] = [];
  const consistency = result.consistency === undefined ? '' : ` (consistency ${result.consistency})`;
  lines.push(
    `Workload ${result.workload}${consistency}: ${result.clients} clients over ${result.conns} conns to ${result.endpoints.join(',')}`,
  );
  lines.push('');
  lines.push('Summary:');
  lines.push(`  Total:       ${result.durationSec.toFixed(3)} s`);
  lines.push(`  Operations:  ${result.ops}${result.workload === 'watch' ? ' events delivered' : ''}`);
  lines.push(`  Errors:      ${result.errors}`);
  lines.push(`  Throughput:  ${result.opsPerSec.toFixed(1)} ops/s`);
  lines.push(
    `  Client CPU:  ${result.clientCpuPercent.toFixed(0)} % of one core${result.clientCpuPercent > 85 ? '  (the tool itself is near saturation: add processes, not clients)' : ''}`,
  );
  for (const [name, value] of Object.entries(result.extra)) {
    lines.push(`  ${`${name}:`.padEnd(13)}${Number.isInteger(value) ? value : value.toFixed(2)}`);
  }
  const l = result.latencyMs;
  lines.push('');
  lines.push(`Latency (ms)${result.workload === 'watch' ? ', put to event delivery' : ''}:`);
  lines.push(
    `  min ${formatMs(l.min)}  mean ${formatMs(l.mean)}  p50 ${formatMs(l.p50)}  p90 ${formatMs(l.p90)}  p99 ${formatMs(l.p99)}  p99.9 ${formatMs(l.p999)}  max ${formatMs(l.max)}`,
  );
  lines.push('');
  lines.push('Latency histogram (ms):');
  const largest = Math.max(1, ...result.histogram.map((range) => range.count));
  for (const range of result.histogram) {
    const bar = '∎'.repeat(
      Math.max(range.count > 0 ? 1 : 0, Math.round((range.count / largest) * histogramBarWidth)),
    );
    lines.push(
      `  ${formatMs(range.fromMs).padStart(8)} - ${formatMs(range.toMs).padEnd(8)} [${String(range.count).padStart(8)}] ${bar}`,
    );
  }
  if (result.errorSamples.length > 0) {
    lines.push('');
    lines.push('Errors (first distinct messages):');
    for (const message of result.errorSamples) lines.push(`  ${message}`);
  }
  return lines.join('\n');
}

// Output in etcdctl's formats. `json` mirrors etcdctl's (Go's encoding/json of the protobuf
// structs): snake_case names, 64-bit integers as bare JSON numbers, bytes in base64, zero
// values left out. `table` is etcdctl's bordered table.

import type { KeyValue, ResponseHeader } from '../../client/index.js';

export type WriteOut = 'simple' | 'json' | 'table';

export function parseWriteOut(text: string | undefined): WriteOut {
  const value = text ?? 'simple';
  if (value === 'simple' || value === 'json' || value === 'table') return value;
  throw new Error(`unsupported output format ${JSON.stringify(value)} (simple, json, table)`);
}

export interface Output {
  out(text: string): void;
  err(text: string): void;
}

/** JSON text where bigints are printed as exact bare numbers, and undefined/zero fields dropped. */
export function toJson(value: unknown): string {
  if (typeof value === 'bigint') return value.toString();
  if (value === null || value === undefined) return 'null';
  if (Buffer.isBuffer(value)) return JSON.stringify(value.toString('base64'));
  if (Array.isArray(value)) return `[${value.map(toJson).join(',')}]`;
  if (typeof value === 'object') {
    const parts: string[] = [];
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (v === undefined || v === 0n || v === false || v === '' || (Array.isArray(v) && v.length === 0))
        continue;
      if (Buffer.isBuffer(v) && v.length === 0) continue;
      parts.push(`${JSON.stringify(k)}:${toJson(v)}`);
    }
    return `{${parts.join(',')}}`;
  }
  return JSON.stringify(value);
}

export function headerJson(header: ResponseHeader): Record<string, unknown> {
  return {
    cluster_id: header.clusterId,
    member_id: header.memberId,
    revision: header.revision,
    raft_term: header.raftTerm,
  };
}

export function kvJson(kv: KeyValue): Record<string, unknown> {
  return {
    key: kv.key,
    create_revision: kv.createRevision,
    mod_revision: kv.modRevision,
    version: kv.version,
    value: kv.value,
    lease: kv.lease,
  };
}

export function hex(id: bigint): string {
  return id.toString(16);
}

/** etcdctl prints member IDs as %x and cluster IDs as %x. */
export function humanBytes(bytes: bigint): string {
  // go-humanize's Bytes: SI units, 1 decimal below 10, none above.
  const n = Number(bytes);
  if (n < 10) return `${n} B`;
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  const exp = Math.min(Math.floor(Math.log(n) / Math.log(1000)), units.length - 1);
  const value = n / 1000 ** exp;
  const text = value < 10 ? value.toFixed(1) : value.toFixed(0);
  return `${text} ${units[exp]}`;
}

/** A bordered table like etcdctl's (olekukonko/tablewriter): centered headers, right-aligned cells. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const border = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`;
  const center = (text: string, width: number) => {
    const left = Math.floor((width - text.length) / 2);
    return ' '.repeat(left) + text + ' '.repeat(width - text.length - left);
  };
  const headerLine = `|${headers.map((h, i) => ` ${center(h, widths[i] as number)} `).join('|')}|`;
  // etcdctl right-aligns every cell (tablewriter ALIGN_RIGHT).
  const rowLines = rows.map(
    (r) => `|${r.map((cell, k) => ` ${cell.padStart(widths[k] as number)} `).join('|')}|`,
  );
  return [border, headerLine, border, ...rowLines, border].join('\n');
}

/** A one-line progress bar for stderr ("\r" redraws); only drawn when stderr is a terminal. */
export class ProgressBar {
  private lastDrawMs = 0;
  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  update(done: number, total: number): void {
    if (!this.stream.isTTY) return;
    const now = Date.now();
    if (now - this.lastDrawMs < 100 && done < total) return;
    this.lastDrawMs = now;
    const fraction = total > 0 ? Math.min(1, done / total) : 0;
    const widthChars = 30;
    const filled = Math.round(fraction * widthChars);
    const bar = `${'='.repeat(filled)}${filled < widthChars ? '>' : ''}${' '.repeat(Math.max(0, widthChars - filled - 1))}`;
    this.stream.write(
      `\r${this.label} [${bar}] ${(fraction * 100).toFixed(0).padStart(3)}% ${humanBytes(BigInt(done))}`,
    );
  }

  finish(): void {
    if (this.stream.isTTY) this.stream.write('\n');
  }
}

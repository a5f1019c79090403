// Command-line parsing in etcdctl's style: `--flag=value`, `--flag value`, `-w json`, boolean
// flags without a value, and positional arguments in between.

export type FlagType = 'string' | 'boolean';

export interface FlagSpec {
  name: string;
  type: FlagType;
  alias?: string;
  default?: string;
}

export class UsageError extends Error {
  readonly code = 'usage';
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface ParsedArgs {
  positionals: string[];
  flags: Map<string, string>;
}

export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[]): ParsedArgs {
  const byName = new Map<string, FlagSpec>();
  for (const spec of specs) {
    byName.set(spec.name, spec);
    if (spec.alias !== undefined) byName.set(spec.alias, spec);
  }
  const flags = new Map<string, string>();
  for (const spec of specs) if (spec.default !== undefined) flags.set(spec.name, spec.default);
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    const match = /^--?([A-Za-z][\w-]*)(?:=(.*))?$/s.exec(arg);
    if (match === null) {
      positionals.push(arg);
      continue;
    }
    const spec = byName.get(match[1] as string);
    if (spec === undefined) throw new UsageError(`unknown flag: ${arg}`);
    if (spec.type === 'boolean') {
      const value = match[2] ?? 'true';
      if (value !== 'true' && value !== 'false')
        throw new UsageError(`flag --${spec.name} takes true or false`);
      flags.set(spec.name, value);
      continue;
    }
    let value = match[2];
    if (value === undefined) {
      value = argv[i + 1];
      i++;
      if (value === undefined) throw new UsageError(`flag --${spec.name} needs a value`);
    }
    flags.set(spec.name, value);
  }
  return { positionals, flags };
}

export function flagBool(args: ParsedArgs, name: string): boolean {
  return args.flags.get(name) === 'true';
}

export function flagString(args: ParsedArgs, name: string): string | undefined {
  return args.flags.get(name);
}

export function flagInt(args: ParsedArgs, name: string, fallback: number): number {
  const text = args.flags.get(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value))
    throw new UsageError(`flag --${name} needs an integer, got ${JSON.stringify(text)}`);
  return value;
}

/** Go-style durations as etcdctl takes them: "2s", "500ms", "1m", "1m30s"; a bare number is seconds. */
export function parseDurationMs(text: string): number {
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = text;
  while (rest.length > 0) {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (match === null) throw new UsageError(`bad duration ${JSON.stringify(text)} (use e.g. 2s, 500ms)`);
    total += Number(match[1]) * (units[match[2] as string] as number);
    rest = rest.slice(match[0].length);
  }
  return total;
}

export function requirePositionals(args: ParsedArgs, min: number, max: number, usage: string): string[] {
  const count = args.positionals.length;
  if (count < min || count > max) throw new UsageError(`${usage}`);
  return args.positionals;
}

// Reads Prometheus' text exposition format (what /metrics answers) into families: type, label
// names, histogram bucket bounds and every sample, enough for tests to compare two servers.

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  type: string;
  /** Label names of the samples, sorted; for a histogram without `le`. */
  labelNames: string[];
  /** A histogram's `le` bounds in order (+Inf excluded). */
  buckets: number[];
  /** Samples by series name (name, name_bucket, name_sum, ...). */
  samples: Map<string, Sample[]>;
}

const sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const labelPair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  const familyOf = (series: string): MetricFamily | undefined => {
    const exact = families.get(series);
    if (exact !== undefined) return exact;
    for (const suffix of ['_bucket', '_sum', '_count']) {
      if (series.endsWith(suffix)) {
        const family = families.get(series.slice(0, -suffix.length));
        if (family !== undefined) return family;
      }
    }
    return undefined;
  };
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [name, type] = line.slice('# TYPE '.length).split(' ');
      families.set(name!, { name: name!, type: type!, labelNames: [], buckets: [], samples: new Map() });
      continue;
    }
    if (line.startsWith('#') || line.trim() === '') continue;
    const match = sampleLine.exec(line);
    if (match === null) continue;
    const [, series, labelText, valueText] = match;
    const family = familyOf(series!);
    if (family === undefined) continue;
    const labels: Record<string, string> = {};
    for (const pair of (labelText ?? '').matchAll(labelPair)) labels[pair[1]!] = pair[2]!;
    const value = valueText === '+Inf' ? Number.POSITIVE_INFINITY : Number(valueText);
    const list = family.samples.get(series!) ?? [];
    list.push({ labels, value });
    family.samples.set(series!, list);
    const names = Object.keys(labels).filter((n) => n !== 'le' && n !== 'quantile');
    for (const name of names) if (!family.labelNames.includes(name)) family.labelNames.push(name);
    family.labelNames.sort();
    if (series === `${family.name}_bucket` && labels.le !== undefined && labels.le !== '+Inf') {
      const bound = Number(labels.le);
      if (!family.buckets.includes(bound)) family.buckets.push(bound);
    }
  }
  for (const family of families.values()) family.buckets.sort((a, b) => a - b);
  return families;
}

/** The value of the one sample of `series` whose labels include `labels` (summed if several). */
export function sampleValue(
  families: Map<string, MetricFamily>,
  family: string,
  series: string = family,
  labels: Record<string, string> = {},
): number {
  const samples = families.get(family)?.samples.get(series) ?? [];
  let total = 0;
  let found = false;
  for (const sample of samples) {
    if (Object.entries(labels).every(([k, v]) => sample.labels[k] === v)) {
      total += sample.value;
      found = true;
    }
  }
  if (!found) throw new Error(`no sample ${series}${JSON.stringify(labels)}`);
  return total;
}

export async function scrapeMetrics(clientUrl: string): Promise<Map<string, MetricFamily>> {
  const response = await fetch(`${clientUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`GET ${clientUrl}/metrics: HTTP ${response.status}`);
  return parsePrometheusText(await response.text());
}

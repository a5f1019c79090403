// A measured write rate kept for later: `concordctl check capacity --save FILE` writes it to a
// file, `--publish` into the cluster under CAPACITY_RECORD_KEY (where every member's dashboard
// finds it), and `--no-bench --recorded FILE` reads it back instead of benchmarking again.

import type { CalibrationStep } from './measure.js';
import type { MeasuredRate } from './report.js';

/** The key --publish writes the recording to; the dashboard reads it with a serializable get. */
export const CAPACITY_RECORD_KEY = '/concord/capacity/measured';
const RECORD_KIND = 'concord-capacity-measurement';
const RECORD_VERSION = 1;

export interface CapacityRecord {
  kind: typeof RECORD_KIND;
  version: typeof RECORD_VERSION;
  endpoints: string[];
  rate: MeasuredRate;
  steps: CalibrationStep[];
}

export function encodeRecord(
  endpoints: readonly string[],
  rate: MeasuredRate,
  steps: readonly CalibrationStep[],
) {
  const record: CapacityRecord = {
    kind: RECORD_KIND,
    version: RECORD_VERSION,
    endpoints: [...endpoints],
    rate: { ...rate, source: 'bench' },
    steps: [...steps],
  };
  return `${JSON.stringify(record, null, 2)}\n`;
}

/** The recording's rate, marked as recorded; throws with what is wrong when the text is not one. */
export function decodeRecord(text: string, where: string): CapacityRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`${where} is not JSON (${(error as Error).message})`);
  }
  const record = parsed as Partial<CapacityRecord> | null;
  if (record?.kind !== RECORD_KIND || record.version !== RECORD_VERSION)
    throw new Error(
      `${where} is not a ${RECORD_KIND} version ${RECORD_VERSION} (concordctl check capacity --save)`,
    );
  const rate = record.rate;
  if (
    rate === undefined ||
    typeof rate.writesPerSec !== 'number' ||
    !(rate.writesPerSec > 0) ||
    typeof rate.measuredAt !== 'string'
  )
    throw new Error(`${where} has no positive rate.writesPerSec`);
  return {
    kind: RECORD_KIND,
    version: RECORD_VERSION,
    endpoints: Array.isArray(record.endpoints) ? record.endpoints.map(String) : [],
    rate: { ...rate, source: 'recorded' },
    steps: Array.isArray(record.steps) ? record.steps : [],
  };
}

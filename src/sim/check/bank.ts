// The bank workload: transfers move money between a fixed set of accounts, and a snapshot read
// returns every balance at one revision. Whatever the interleaving, each snapshot must hold
// every account, sum to the initial total, and (unless overdrafts are allowed) show no
// negative balance. Transfers themselves are judged for serializability by the list-append
// checker (see the Jepsen bank workload); this checker covers what snapshots promise.

import {
  formatInterval,
  formatProcess,
  type History,
  HistoryFormatError,
  type Operation,
  validateHistory,
} from './history.js';
import { AnomalyCollector, type Verdict } from './verdict.js';

/** kind 'read': output maps each account to its balance. Other kinds are ignored. */
export type BankReadOp = Operation<unknown, Readonly<Record<string, number>>>;

export interface BankOptions {
  accounts: readonly string[];
  total: number;
  negativeAllowed?: boolean;
}

export interface BankVerdict extends Verdict {
  readsChecked: number;
}

export function checkBank(history: History, options: BankOptions): BankVerdict {
  validateHistory(history);
  const anomalies = new AnomalyCollector();
  const reads = (history as readonly BankReadOp[]).filter((op) => op.kind === 'read' && op.status === 'ok');
  for (const read of reads) {
    const balances = read.output;
    if (balances === undefined || typeof balances !== 'object') {
      throw new HistoryFormatError('HISTORY_BAD_OPERATION', 'ok bank read has no balances', read.id);
    }
    const where = `snapshot read by ${formatProcess(read.process)} at ${formatInterval(read)}`;
    const missing = options.accounts.filter((a) => balances[a] === undefined);
    const extra = Object.keys(balances).filter((a) => !options.accounts.includes(a));
    if (missing.length > 0 || extra.length > 0) {
      anomalies.add({
        code: 'BANK_WRONG_ACCOUNTS',
        opIds: [read.id],
        message: `${where} is missing accounts [${missing.join(', ')}] and has unknown ones [${extra.join(', ')}]`,
      });
    }
    const sum = Object.values(balances).reduce((a, b) => a + b, 0);
    if (sum !== options.total) {
      anomalies.add({
        code: 'BANK_WRONG_TOTAL',
        opIds: [read.id],
        message: `${where} sums to ${sum}, not ${options.total}: ${JSON.stringify(balances)}`,
      });
    }
    const negative = Object.entries(balances).filter(([, b]) => b < 0);
    if (!options.negativeAllowed && negative.length > 0) {
      anomalies.add({
        code: 'BANK_NEGATIVE_BALANCE',
        subject: negative[0]![0],
        opIds: [read.id],
        message: `${where} shows negative balances ${JSON.stringify(Object.fromEntries(negative))}`,
      });
    }
  }
  if (reads.length === 0) {
    return {
      valid: 'unknown',
      anomalies: [],
      explanation: 'bank: UNDECIDED. No snapshot read completed.',
      readsChecked: 0,
    };
  }
  const verdict = anomalies.toVerdict(
    'bank',
    `${reads.length} snapshots of ${options.accounts.length} accounts all sum to ${options.total}${options.negativeAllowed ? '' : ', none negative'}.`,
  );
  return { ...verdict, readsChecked: reads.length };
}

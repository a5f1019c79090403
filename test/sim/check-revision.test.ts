import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Operation } from '../../src/sim/check/history.js';
import { checkRevisions, type RevisionFacts } from '../../src/sim/check/revision.js';

type Op = Operation<undefined, RevisionFacts>;

function op(
  id: number,
  kind: 'put' | 'range',
  key: string,
  revision: number,
  invoke: number,
  complete: number,
): Op {
  return {
    id,
    process: id,
    kind,
    key,
    input: undefined,
    output: { revision, mutation: kind === 'put' },
    invokeTime: invoke,
    completeTime: complete,
    status: 'ok',
  };
}

const facts = (o: Op): RevisionFacts | undefined => o.output;

describe('revision order checker', () => {
  it('accepts revisions that follow real time across keys, with concurrent ops in any order', () => {
    const history = [
      op(1, 'put', 'a', 2, 0, 10),
      op(2, 'put', 'b', 3, 1, 5),
      op(3, 'range', 'a', 3, 11, 12),
      op(4, 'put', 'c', 4, 13, 14),
      op(5, 'range', 'b', 4, 15, 16),
    ];
    const verdict = checkRevisions(history, facts);
    assert.equal(verdict.valid, true, verdict.explanation);
  });

  it('flags a read served at a revision older than a write that had finished (stale read on another key)', () => {
    const history = [op(1, 'put', 'a', 5, 0, 1), op(2, 'range', 'b', 4, 2, 3)];
    const verdict = checkRevisions(history, facts);
    assert.deepEqual(
      verdict.anomalies.map((a) => [a.code, a.opIds]),
      [['REVISION_WENT_BACKWARDS', [1, 2]]],
    );
    assert.match(
      verdict.anomalies[0]!.message,
      /read at revision 4, after put by client 1 at \[0, 1\] created revision 5/,
    );
  });

  it('flags a write whose revision is not newer than what a finished read already saw', () => {
    const history = [op(1, 'range', 'a', 7, 0, 1), op(2, 'put', 'b', 7, 2, 3)];
    assert.equal(checkRevisions(history, facts).anomalies[0]?.code, 'REVISION_WENT_BACKWARDS');
  });

  it('flags two writes that created the same revision', () => {
    const history = [op(1, 'put', 'a', 5, 0, 10), op(2, 'put', 'b', 5, 1, 11)];
    assert.deepEqual(
      checkRevisions(history, facts).anomalies.map((a) => a.code),
      ['REVISION_REUSED'],
    );
  });

  it('leaves out ops the caller excludes, such as serializable reads', () => {
    const history = [op(1, 'put', 'a', 5, 0, 1), op(2, 'range', 'b', 4, 2, 3)];
    const verdict = checkRevisions(history, (o) => (o.kind === 'range' ? undefined : o.output));
    assert.equal(verdict.valid, true);
  });
});

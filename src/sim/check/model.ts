// A sequential specification for the linearizability checker: given a state and one operation
// (with its observed output), is the output possible, and what is the next state?

import type { Operation } from './history.js';

export interface StepResult<State> {
  ok: boolean;
  /** Meaningful only when ok is true. */
  newState: State;
}

export interface Model<State, Input = unknown, Output = unknown> {
  readonly name: string;
  init(): State;
  /**
   * Applies op to state. For status 'ok' the op's output must match what the spec returns.
   * For status 'unknown' the output is not known: accept any outcome the op could have had.
   * Returning ok:false for an unknown op only prunes that branch; the checker separately
   * allows it to be omitted altogether.
   */
  step(state: State, op: Operation<Input, Output>): StepResult<State>;
  equal(a: State, b: State): boolean;
  /** 32-bit hash consistent with equal, used for the memoization cache. */
  hash(state: State): number;
  describeOp(op: Operation<Input, Output>): string;
  describeState(state: State): string;
  /**
   * Optional: unknown-status ops this returns true for cannot change the state, and since their
   * output is unknown they constrain nothing. The checker drops them before the search.
   */
  isReadOnly?(op: Operation<Input, Output>): boolean;
  /**
   * Optional: true when an unknown-status op can be left out of every linearization without
   * losing one, because no other op on the key could observe its effect. Dropping such ops
   * before the search avoids trying them at every step (they never leave the candidate list).
   */
  canOmit?(op: Operation<Input, Output>, keyOps: readonly Operation<Input, Output>[]): boolean;
  /**
   * Optional: a cheap necessary condition checked before the search (e.g. a read of a value no
   * write could have left in place at its time). Returning an op means the key is certainly not
   * linearizable; it must never fire on a linearizable history. Saves the exponential search on
   * the most common anomalies and gives a direct explanation.
   */
  findCertainViolation?(
    keyOps: readonly Operation<Input, Output>[],
  ): { opId: number; explanation: string } | undefined;
  /**
   * Optional: one sentence saying why op could not be placed after a prefix that left state,
   * using the other operations on the same key for context (e.g. which values were possible).
   */
  explainUnplaceable?(
    op: Operation<Input, Output>,
    state: State,
    keyOps: readonly Operation<Input, Output>[],
  ): string;
}

/** FNV-1a over a string's UTF-16 code units. */
export function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

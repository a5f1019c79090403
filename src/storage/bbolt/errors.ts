// Typed failures of the bbolt reader and writer, each with a stable `code`.

/** The file is not a bbolt database, or one whose pages contradict each other. */
export class BboltFormatError extends Error {
  readonly code = 'BBOLT_CORRUPT' as const;
  constructor(reason: string) {
    super(reason);
    this.name = 'BboltFormatError';
  }
}

/** What the writer was given cannot be written (unsorted or oversized keys, a source that changed). */
export class BboltWriteError extends Error {
  readonly code = 'BBOLT_WRITE' as const;
  constructor(reason: string) {
    super(reason);
    this.name = 'BboltWriteError';
  }
}

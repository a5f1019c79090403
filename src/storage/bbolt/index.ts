// The bbolt database file format (etcd's backend and snapshot files): a streaming writer and a
// page-by-page reader. See format.ts for the layout.
export { BboltFormatError, BboltWriteError } from './errors.js';
export { BBOLT_MAGIC, BBOLT_PAGE_BYTES_DEFAULT, type BboltMeta, PAGE_HEADER_BYTES } from './format.js';
export { type BboltEntry, type BboltOpenOptions, BboltReader } from './reader.js';
export {
  type BboltBucketSource,
  BboltFilePlan,
  type BboltSourceEntry,
  type BboltWriteOptions,
  planBboltFile,
} from './writer.js';

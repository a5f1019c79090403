export * from './errors.js';
export * from './keyspace.js';
export * from './types.js';
export * from './validate.js';
export * from './watch.js';

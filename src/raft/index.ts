export * from './api.js';
export * from './confchange.js';
export * from './errors.js';
export * from './memory-storage.js';
export * from './node.js';
export * from './types.js';

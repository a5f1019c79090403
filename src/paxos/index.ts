export * from './errors.js';
export * from './node.js';
export * from './quorum.js';

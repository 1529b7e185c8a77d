export * from './decision-types.js';
export * from './duration.js';
export * from './hash.js';
export * from './lint.js';
export * from './load.js';
export * from './selector.js';
export * from './validate.js';
export * from './verify.js';

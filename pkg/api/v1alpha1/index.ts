export * from './types.js';
export * from './conditions.js';

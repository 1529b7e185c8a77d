export * from './authority.js';
export * from './errors.js';
export * from './keys.js';
export * from './pem.js';
export * from './pkcs10.js';
export * from './spiffe.js';
export * from './store.js';

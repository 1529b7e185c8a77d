export * from './authenticator.js';
export * from './duration.js';
export * from './errors.js';
export * from './policy-index.js';
export * from './rate-limiter.js';
export * from './server.js';
export * from './admin-client.js';

export * from './backoff.js';
export * from './client.js';
export * from './policy-watch-client.js';
export * from './tls.js';
export { spiffeIdOfCertificate, parseSpiffeId, spiffeIdFor } from '../ca/spiffe.js';

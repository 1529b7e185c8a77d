/** SPIFFE IDs live in pkg/spiffe; re-exported for the CA's public API. */
export * from '../spiffe/spiffe.js';

/**
 * pkg/kube: the only importer of @kubernetes/client-node. Clients, supervised informers, the
 * controller's writes (status and NetworkPolicies by server-side apply, Events), Lease leader
 * election, TokenReview authentication and the CA's Secret store.
 */
export * from './backoff.js';
export * from './client.js';
export * from './errors.js';
export * from './informer.js';
export * from './leader-election.js';
export * from './resources.js';
export * from './secret-ca-store.js';
export * from './token-review.js';
export * from './writers.js';
export * from './cli-cluster.js';
export * from './webhook-certs.js';
export * from './trust-bundle.js';

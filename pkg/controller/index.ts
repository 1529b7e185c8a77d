/**
 * pkg/controller: the controller runtime (informers → keyed work queue → reconcilers, leader
 * election for writes), its admin HTTP server, and the pieces it is built from.
 */
export * from './admin-server.js';
export * from './controller.js';
export * from './metrics.js';
export * from './network-policy-sync.js';
export * from './policy-reconciler.js';
export * from './ports.js';
export * from './verified-set.js';
export * from './work-queue.js';
export * from './workload-index.js';

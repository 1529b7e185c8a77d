export * from './types.js';
export * from './codes.js';
export * from './spiffe.js';
export * from './rate-limiter.js';
export * from './data-protection.js';
export * from './audit-log.js';
export * from './metrics.js';
export * from './policy-state.js';
export * from './headers.js';
export * from './destinations.js';
export {
  InboundServer,
  HEADER_REQUEST_ID,
  type InboundOptions,
  type InboundDeps,
} from './inbound.js';
export {
  OutboundProxy,
  PeerIdentityError,
  parseProxyTarget,
  parseAuthority,
  type OutboundOptions,
  type OutboundDeps,
} from './outbound.js';
export { AdminServer, type ReadinessCheck } from './admin-server.js';
export { startSidecar, type SidecarConfig, type RunningSidecar } from './sidecar.js';

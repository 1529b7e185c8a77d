/**
 * startSidecar: wires the inbound enforcer, the outbound proxy, the audit log and the admin
 * endpoints to the TLS material and policy snapshot sources. cmd/sidecar adapts the identity
 * clients to these sources and handles signals (SIGTERM → close()).
 */
import type { Registry } from 'prom-client';

import { AdminServer, type ReadinessCheck } from './admin-server.js';
import { AuditLog, type AuditLogOptions } from './audit-log.js';
import { DataProtector } from './data-protection.js';
import { InboundServer, type InboundOptions } from './inbound.js';
import { createSidecarMetrics } from './metrics.js';
import { OutboundProxy, type OutboundOptions } from './outbound.js';
import { PolicyState } from './policy-state.js';
import { RateLimiter } from './rate-limiter.js';
import { defaultIdentityResolver } from './spiffe.js';
import type {
  Clock,
  DestinationResolver,
  IdentityResolver,
  PolicySnapshotSource,
  SidecarLogger,
  TlsMaterial,
  TlsMaterialSource,
} from './types.js';

export interface SidecarConfig {
  /** This workload's module (the destination of inbound calls). */
  module: string;
  namespace: string;
  trustDomain: string;
  inbound: Omit<InboundOptions, 'module' | 'trustDomain'>;
  outbound: Omit<OutboundOptions, 'module' | 'trustDomain'>;
  admin: { host: string; port: number };
  tls: TlsMaterialSource;
  policy: PolicySnapshotSource;
  resolveDestination: DestinationResolver;
  identityResolver?: IdentityResolver;
  /** HMAC key for tokenization (at least 16 bytes). */
  tokenizeKey: string | Buffer;
  /** Audit file, or `-` for stdout. */
  auditLogPath: string;
  audit?: Omit<AuditLogOptions, 'path' | 'clock' | 'logger'>;
  registry: Registry;
  logger: SidecarLogger;
  clock?: Clock;
  /** Buckets kept by the rate limiter; default 100 000. */
  rateLimiterMaxKeys?: number;
}

export interface RunningSidecar {
  inboundPort: number;
  outboundPort: number;
  adminPort: number;
  readiness(): ReadinessCheck;
  /** Resolves when every audit record so far is durable. */
  flushAudit(): Promise<void>;
  /** Drains in-flight calls (up to `graceMs`), then closes listeners, pools and the audit log. */
  close(graceMs?: number): Promise<void>;
}

export async function startSidecar(config: SidecarConfig): Promise<RunningSidecar> {
  const clock = config.clock ?? Date.now;
  const logger = config.logger;
  const metrics = createSidecarMetrics(config.registry);
  const audit = await AuditLog.open({ ...config.audit, path: config.auditLogPath, clock, logger });
  const policy = new PolicyState(config.policy, config.module, logger);
  const protector = new DataProtector(config.tokenizeKey);
  const inbound = new InboundServer(
    { ...config.inbound, module: config.module, trustDomain: config.trustDomain },
    {
      policy,
      rateLimiter: new RateLimiter(config.rateLimiterMaxKeys),
      protector,
      audit,
      metrics,
      logger,
      clock,
      identityResolver: config.identityResolver ?? defaultIdentityResolver,
    },
  );
  const outbound = new OutboundProxy(
    { ...config.outbound, module: config.module, trustDomain: config.trustDomain },
    {
      tls: config.tls,
      policy,
      resolveDestination: config.resolveDestination,
      audit,
      metrics,
      logger,
      clock,
    },
  );

  const notAfterOf = (m: TlsMaterial): number =>
    m.notAfter instanceof Date ? m.notAfter.getTime() : m.notAfter;
  const install = (material: TlsMaterial, source: 'tls' | 'policy'): void => {
    try {
      const roots = policy.current?.extraRoots ?? [];
      inbound.setTlsMaterial(material, roots);
      outbound.setTlsMaterial(material, roots);
      metrics.certExpiry.set(notAfterOf(material) / 1000);
      logger.info('TLS material installed', {
        spiffeId: material.spiffeId,
        notAfter: new Date(notAfterOf(material)).toISOString(),
        trigger: source,
      });
    } catch (e) {
      // Keep serving with the previous context: a bad update must not take the listener down.
      logger.error('TLS material refused; keeping the previous certificate', {
        error: e instanceof Error ? e : String(e),
      });
    }
  };
  const first = config.tls.current();
  if (first !== undefined) install(first, 'tls');
  const unsubscribeTls = config.tls.onChange((m) => install(m, 'tls'));
  let lastRoots = policy.current?.extraRoots.join('') ?? '';
  metrics.snapshotVersion.set(policy.current?.version ?? 0);
  policy.onChange((s) => {
    metrics.snapshotVersion.set(s.version);
    const roots = s.extraRoots.join('');
    const m = config.tls.current();
    if (roots !== lastRoots && m !== undefined) install(m, 'policy');
    lastRoots = roots;
  });

  const readiness = (): ReadinessCheck => {
    const m = config.tls.current();
    const certOk = m !== undefined && clock() < notAfterOf(m);
    const snap = policy.current;
    return {
      ready: certOk && snap !== undefined && audit.healthy,
      checks: {
        certificate: certOk
          ? { ok: true }
          : { ok: false, detail: m === undefined ? 'no certificate yet' : 'certificate expired' },
        policySnapshot:
          snap !== undefined
            ? { ok: true, detail: `version ${snap.version}` }
            : { ok: false, detail: 'no policy snapshot yet' },
        audit: audit.healthy ? { ok: true } : { ok: false, detail: 'audit sink failing' },
      },
    };
  };
  const admin = new AdminServer(
    config.admin.host,
    config.admin.port,
    config.registry,
    readiness,
    () => !audit.broken,
  );

  let ports: [number, number, number];
  try {
    ports = await Promise.all([inbound.listen(), outbound.listen(), admin.listen()]);
  } catch (e) {
    await Promise.allSettled([inbound.close(0), outbound.close(0), admin.close()]);
    policy.close();
    unsubscribeTls();
    await audit.close();
    throw e;
  }
  logger.info('sidecar started', {
    module: config.module,
    inboundPort: ports[0],
    outboundPort: ports[1],
    adminPort: ports[2],
  });

  let closing: Promise<void> | undefined;
  return {
    inboundPort: ports[0],
    outboundPort: ports[1],
    adminPort: ports[2],
    readiness,
    flushAudit: () => audit.flush(),
    close(graceMs = 10_000) {
      closing ??= (async () => {
        unsubscribeTls();
        policy.close();
        await Promise.all([inbound.close(graceMs), outbound.close(graceMs)]);
        await admin.close();
        await audit.close();
        logger.info('sidecar stopped', { module: config.module });
      })();
      return closing;
    },
  };
}

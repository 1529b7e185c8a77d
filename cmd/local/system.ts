/**
 * Local mode: the whole of erpguard on one machine, on loopback, without a cluster. The
 * controller part reads policies from a watched directory (approvals from the files), runs the
 * CA and the gRPC identity and policy service; each sample ERP module runs behind its own
 * sidecar, which got its certificate through the real CSR flow with a static token. Used by
 * `erpguard demo` and by tests; the same packages run in the cluster.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import {
  createCertificateAuthority,
  FileCaKeyStore,
  spiffeIdFor,
  spiffeIdOfCertificate,
} from '../../pkg/ca/index.js';
import type { CertificateAuthority } from '../../pkg/ca/index.js';
import { startSampleApp } from '../../pkg/demo/sample-apps.js';
import type { RunningApp, SampleModule } from '../../pkg/demo/sample-apps.js';
import {
  defaultRevocationEnd,
  PolicyIndex,
  startIdentityServer,
  StaticTokenAuthenticator,
} from '../../pkg/identity/index.js';
import type { IdentityServer } from '../../pkg/identity/index.js';
import { watchPolicyDirectory } from '../../pkg/local/policy-directory.js';
import type {
  PolicyDirectoryState,
  PolicyDirectoryWatcher,
} from '../../pkg/local/policy-directory.js';
import type { ReviewerConfig } from '../../pkg/policy/verify.js';
import { startSidecar } from '../../pkg/sidecar/sidecar.js';
import type { RunningSidecar } from '../../pkg/sidecar/sidecar.js';
import { staticDestinationResolver } from '../../pkg/sidecar/destinations.js';
import type { StaticDestination } from '../../pkg/sidecar/destinations.js';
import { createLogger } from '../../pkg/telemetry/logger.js';
import type { Logger } from '../../pkg/telemetry/logger.js';
import {
  PolicyWatchClient,
  watchCredentialsFrom,
  WorkloadIdentityClient,
} from '../../pkg/workload-identity/index.js';
import { policySourceFrom, tlsSourceFrom } from '../shared/identity-sources.js';

export const LOCAL_NAMESPACE = 'erp';
export const LOCAL_TRUST_DOMAIN = 'cluster.local';

export interface LocalModule {
  module: SampleModule;
  spiffeId: string;
  app: RunningApp;
  identity: WorkloadIdentityClient;
  watch: PolicyWatchClient;
  sidecar: RunningSidecar;
  registry: Registry;
  auditLogPath: string;
  /** `http://127.0.0.1:<outbound>`: the module's explicit HTTP proxy. */
  proxyUrl: string;
}

export interface LocalSystem {
  workDir: string;
  policiesDir: string;
  ca: CertificateAuthority;
  index: PolicyIndex;
  identityServer: IdentityServer;
  policies: PolicyDirectoryWatcher;
  modules: Map<SampleModule, LocalModule>;
  /** Refuses an identity at once, until its certificates have expired. */
  revoke(module: SampleModule, reason: string): void;
  close(): Promise<void>;
}

export interface LocalSystemOptions {
  workDir: string;
  /** Directory of policy files (watched). */
  policiesDir: string;
  modules: readonly SampleModule[];
  reviewers: ReviewerConfig;
  logger?: Logger;
  /** Called as each part comes up, for progress output. */
  progress?: (message: string) => void;
  /** Certificate lifetime asked for by the sidecars (default 1 h). */
  certificateTtlSeconds?: number;
  onPolicies?: (state: PolicyDirectoryState) => void;
}

export async function startLocalSystem(options: LocalSystemOptions): Promise<LocalSystem> {
  const progress = options.progress ?? (() => undefined);
  const logger = options.logger ?? createLogger('local', { level: 'warn' });
  const closers: (() => Promise<void> | void)[] = [];
  const close = async (): Promise<void> => {
    for (const closer of closers.reverse()) {
      try {
        await closer();
      } catch (error) {
        logger.warn('close failed', {
          error: error instanceof Error ? error.message : String(error),
        });
      }
    }
  };
  try {
    await mkdir(join(options.workDir, 'ca'), { recursive: true });
    await mkdir(join(options.workDir, 'audit'), { recursive: true });
    const ca = await createCertificateAuthority({
      store: new FileCaKeyStore(join(options.workDir, 'ca')),
      trustDomain: LOCAL_TRUST_DOMAIN,
      logger: logger.child({ part: 'ca' }),
    });
    progress(
      `CA ready (${ca.trustAnchors().length} root${ca.trustAnchors().length === 1 ? '' : 's'}, stored in ${join(options.workDir, 'ca')})`,
    );

    // One static token per module stands in for its projected ServiceAccount token.
    const tokens = new Map(options.modules.map((m) => [m, randomBytes(24).toString('base64url')]));
    const authenticator = new StaticTokenAuthenticator(
      options.modules.map((m) => ({
        token: tokens.get(m) ?? '',
        namespace: LOCAL_NAMESPACE,
        serviceAccount: m,
        module: m,
      })),
    );
    const index = new PolicyIndex({ trustDomain: LOCAL_TRUST_DOMAIN });
    index.setIdentityBindings(authenticator.bindings());
    index.setTrustBundle(ca.trustBundlePem());
    closers.push(ca.onChange(() => index.setTrustBundle(ca.trustBundlePem())));

    const policies = await watchPolicyDirectory({
      dir: options.policiesDir,
      reviewers: options.reviewers,
      now: () => new Date(),
      recheckMs: 1_000,
      onChange: (state) => {
        index.applyPolicies(state.verified);
        options.onPolicies?.(state);
      },
      onError: (error) =>
        logger.warn('policy directory', {
          error: error instanceof Error ? error.message : String(error),
        }),
    });
    closers.push(() => policies.close());
    const first = policies.current();
    progress(
      `controller: ${first.policies.length} policies loaded from ${options.policiesDir}, ${first.verified.length} verified`,
    );

    const controllerRegistry = new Registry();
    const identityServer = await startIdentityServer({
      ca,
      authenticator,
      policyIndex: index,
      registry: controllerRegistry,
      logger: logger.child({ part: 'identity' }),
      listen: { host: '127.0.0.1', port: 0 },
    });
    closers.push(() => identityServer.close());
    const target = `127.0.0.1:${identityServer.port}`;
    const serverSpiffeId = spiffeIdOfCertificate(
      identityServer.servingCertificate().certificateChainPem,
    );
    // Pin the server's SPIFFE ID instead of verifying an IP address as a host name.
    // gRPC would send the IP as TLS server name (RFC 6066 forbids it); the cert also names localhost.
    const connection =
      serverSpiffeId === null
        ? { target, serverName: 'localhost' }
        : { target, serverSpiffeId, serverName: 'localhost' };
    progress(`identity and policy service listening on ${target} (gRPC over TLS)`);

    // Sidecars learn each other's inbound ports through this table, filled as they start.
    const destinations: StaticDestination[] = [];
    let resolver = staticDestinationResolver(destinations);
    const resolveDestination = (host: string, port: number | undefined) => resolver(host, port);

    const modules = new Map<SampleModule, LocalModule>();
    for (const module of options.modules) {
      const app = await startSampleApp(module);
      closers.push(() => app.close());
      const registry = new Registry();
      const token = tokens.get(module) ?? '';
      const trustBundlePem = ca.trustBundlePem();
      const identity = new WorkloadIdentityClient({
        ...connection,
        trustBundlePem,
        token: () => token,
        ttlSeconds: options.certificateTtlSeconds ?? 3600,
        registry,
        logger: logger.child({ module, part: 'identity-client' }),
      });
      await identity.start();
      closers.push(() => identity.stop());
      const watch = new PolicyWatchClient({
        ...connection,
        credentials: watchCredentialsFrom(identity, { trustBundlePem, token: () => token }),
        registry,
        logger: logger.child({ module, part: 'policy-watch' }),
      });
      watch.start();
      closers.push(() => watch.stop());
      await watch.ready();
      const auditLogPath = join(options.workDir, 'audit', `${module}.log`);
      const sidecar = await startSidecar({
        module,
        namespace: LOCAL_NAMESPACE,
        trustDomain: LOCAL_TRUST_DOMAIN,
        inbound: { host: '127.0.0.1', port: 0, appPort: app.port },
        outbound: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0 },
        tls: tlsSourceFrom(identity),
        policy: policySourceFrom(watch, identity),
        resolveDestination,
        tokenizeKey: randomBytes(32),
        auditLogPath,
        registry,
        logger: logger.child({ module, part: 'sidecar' }),
      });
      closers.push(() => sidecar.close(2_000));
      const spiffeId = spiffeIdFor(LOCAL_TRUST_DOMAIN, {
        namespace: LOCAL_NAMESPACE,
        serviceAccount: module,
      });
      destinations.push({
        module,
        namespace: LOCAL_NAMESPACE,
        hosts: [`${module}.erp.local`],
        // The peer is checked by SPIFFE ID; a DNS-style SNI avoids sending an IP as ServerName.
        serverName: `${module}.${LOCAL_NAMESPACE}.svc`,
        address: { host: '127.0.0.1', port: sidecar.inboundPort },
        identities: [spiffeId],
      });
      resolver = staticDestinationResolver(destinations);
      modules.set(module, {
        module,
        spiffeId,
        app,
        identity,
        watch,
        sidecar,
        registry,
        auditLogPath,
        proxyUrl: `http://127.0.0.1:${sidecar.outboundPort}`,
      });
      progress(
        `${module}: app on 127.0.0.1:${app.port}, sidecar inbound mTLS :${sidecar.inboundPort}, outbound proxy :${sidecar.outboundPort}, admin :${sidecar.adminPort}; certificate ${spiffeId}`,
      );
    }

    return {
      workDir: options.workDir,
      policiesDir: options.policiesDir,
      ca,
      index,
      identityServer,
      policies,
      modules,
      revoke: (module, reason) => {
        const spiffeId = spiffeIdFor(LOCAL_TRUST_DOMAIN, {
          namespace: LOCAL_NAMESPACE,
          serviceAccount: module,
        });
        index.revoke(spiffeId, defaultRevocationEnd(ca, Date.now()), reason);
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

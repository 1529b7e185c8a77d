#!/usr/bin/env node
/**
 * erpguard-controller: one process per replica (docs/adr/0004-one-process-controller.md) that
 * runs the controller runtime (informers, status, NetworkPolicies; the Lease leader writes), the
 * workload CA with the gRPC identity and policy service, and the admission webhook. Every replica
 * serves gRPC and the webhook from its own informer caches; only the leader writes to the API.
 *
 * /readyz is ready once every cache has synced and both servers listen. SIGTERM/SIGINT: not
 * ready at once, then the webhook and gRPC servers drain, running reconciles finish, and the
 * Lease is released so another replica takes over without waiting for it to expire.
 */
import { open } from 'node:fs/promises';

import type { Registry } from 'prom-client';

import { LABEL_MODULE } from '../../pkg/api/v1alpha1/index.js';
import { createCertificateAuthority, FileCaKeyStore } from '../../pkg/ca/index.js';
import type { CaKeyStore, CertificateAuthority } from '../../pkg/ca/index.js';
import { AdminServer } from '../../pkg/controller/admin-server.js';
import { Controller } from '../../pkg/controller/controller.js';
import { describeError, ErpguardError, ErrorCode } from '../../pkg/errors/errors.js';
import { PolicyIndex, startIdentityServer } from '../../pkg/identity/index.js';
import type { IdentityServer, ModuleBinding } from '../../pkg/identity/index.js';
import { createKubeClients, loadKubeConfig } from '../../pkg/kube/client.js';
import type { KubeClients } from '../../pkg/kube/client.js';
import { SecretCaKeyStore } from '../../pkg/kube/secret-ca-store.js';
import { TokenReviewAuthenticator } from '../../pkg/kube/token-review.js';
import { TrustBundlePublisher } from '../../pkg/kube/trust-bundle.js';
import { KubeCaBundlePatcher, WebhookCertificateManager } from '../../pkg/kube/webhook-certs.js';
import { createLogger } from '../../pkg/telemetry/logger.js';
import type { Logger } from '../../pkg/telemetry/logger.js';
import { createMetricsRegistry } from '../../pkg/telemetry/metrics.js';
import { createWebhookServer } from '../../pkg/webhook/index.js';
import type { WebhookServer } from '../../pkg/webhook/index.js';

import { parseConfigFile } from './config-file.js';
import { parseControllerConfig, USAGE } from './flags.js';
import type { ControllerConfig } from './flags.js';

const MAX_CONFIG_BYTES = 256 * 1024;

function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals): void => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolve(signal);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

async function readConfigFile(path: string): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
    const buffer = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > MAX_CONFIG_BYTES) {
      throw new ErpguardError(ErrorCode.InvalidConfig, `${path}: larger than 256 KiB`);
    }
    return buffer.subarray(0, bytesRead).toString('utf8');
  } catch (error) {
    if (error instanceof ErpguardError) throw error;
    throw new ErpguardError(ErrorCode.FileUnreadable, `--config: cannot read ${path}`, {
      cause: error,
    });
  } finally {
    await handle?.close();
  }
}

async function loadConfig(args: readonly string[]): Promise<ControllerConfig> {
  const first = parseControllerConfig(args, process.env);
  if (first.configFile === undefined) return first;
  const file = parseConfigFile(await readConfigFile(first.configFile), first.configFile);
  return parseControllerConfig(args, process.env, file);
}

/** Two replicas starting together both find no CA; the loser loads the winner's. */
async function createCa(
  store: CaKeyStore,
  config: ControllerConfig,
  log: Logger,
): Promise<CertificateAuthority> {
  const make = (): Promise<CertificateAuthority> =>
    createCertificateAuthority({
      store,
      trustDomain: config.trustDomain,
      defaultTtlSeconds: config.caDefaultTtlSeconds,
      maxTtlSeconds: config.caMaxTtlSeconds,
      logger: log.child({ part: 'ca' }),
    });
  try {
    return await make();
  } catch (error) {
    if (error instanceof ErpguardError && error.code === ErrorCode.Unavailable) return make();
    throw error;
  }
}

/** ServiceAccount → module bindings for the policy index, from the informer cache. */
function moduleBindings(controller: Controller): ModuleBinding[] {
  const out: ModuleBinding[] = [];
  for (const sa of controller.informers.serviceAccounts.list()) {
    const module = sa.metadata.labels?.[LABEL_MODULE];
    const namespace = sa.metadata.namespace;
    if (module !== undefined && module !== '' && namespace !== undefined) {
      out.push({ namespace, serviceAccount: sa.metadata.name, module });
    }
  }
  return out;
}

function hostOf(address: string): string {
  const colon = address.lastIndexOf(':');
  return colon <= 0 ? address : address.slice(0, colon);
}

interface Running {
  clients: KubeClients;
  controller: Controller;
  admin: AdminServer;
  registry: Registry;
  closers: (() => Promise<unknown> | void)[];
}

async function start(config: ControllerConfig, log: Logger, running: Running): Promise<void> {
  const { controller, clients, closers } = running;
  const registry = running.registry;
  let serversListening = false;
  running.admin.addReadinessCheck('caches', () => controller.notReady());
  running.admin.addReadinessCheck('servers', () =>
    serversListening ? undefined : 'webhook and gRPC servers not listening yet',
  );
  const admin = await running.admin.listen();
  controller.start();

  // Workload CA + gRPC identity and policy service.
  const caStore: CaKeyStore =
    config.caDir !== undefined
      ? new FileCaKeyStore(config.caDir)
      : new SecretCaKeyStore(clients, config.namespace, config.caSecretName);
  const ca = await createCa(caStore, config, log);
  const index = new PolicyIndex({ trustDomain: config.trustDomain });
  index.setTrustBundle(ca.trustBundlePem());
  closers.push(ca.onChange(() => index.setTrustBundle(ca.trustBundlePem())));
  // Sidecars read their first trust bundle from this ConfigMap (projected by the injector).
  const bundlePublisher = new TrustBundlePublisher({
    clients,
    namespaces: () => controller.admissionSnapshot().namespaces,
    bundlePem: () => ca.trustBundlePem(),
    isLeader: () => controller.isLeader(),
    logger: log.child({ part: 'trust-bundle' }),
  });
  bundlePublisher.start();
  closers.push(() => bundlePublisher.stop());
  closers.push(ca.onChange(() => void bundlePublisher.sync()));
  let bindingsTimer: NodeJS.Timeout | undefined;
  const refreshBindings = (): void => {
    if (bindingsTimer !== undefined) return;
    // Coalesces a burst of ServiceAccount events into one recomputation.
    bindingsTimer = setTimeout(() => {
      bindingsTimer = undefined;
      index.setIdentityBindings(moduleBindings(controller));
    }, 50);
  };
  controller.informers.serviceAccounts.on({
    add: refreshBindings,
    update: refreshBindings,
    delete: refreshBindings,
  });
  closers.push(() => clearTimeout(bindingsTimer));
  closers.push(
    controller.onVerifiedPoliciesChanged((policies) => {
      const result = index.applyPolicies(policies);
      for (const s of result.skipped) log.warn('policy not published', s);
    }),
  );
  const authenticator = new TokenReviewAuthenticator(clients, {
    serviceAccounts: controller.informers.serviceAccounts,
    logger: log,
  });
  const controllerHost = hostOf(config.controllerAddress);
  const identityServer: IdentityServer = await startIdentityServer({
    ca,
    authenticator,
    policyIndex: index,
    registry,
    logger: log.child({ part: 'identity' }),
    listen: { host: config.grpcHost, port: config.grpcPort },
    serving: {
      dnsNames: [...new Set([controllerHost, ...config.webhook.dnsNames, 'localhost'])].filter(
        (n) => !/^[\d.]+$/.test(n) && !n.includes(':'),
      ),
      ipAddresses: ['127.0.0.1', '::1'],
    },
  });
  closers.push(() => identityServer.close());

  // Admission webhook: the serving certificate first, the server reads it on start.
  // Filled once the server exists; certificate renewals before that need no reload.
  const servers: { webhook?: WebhookServer } = {};
  let certFile = config.webhook.certFile;
  let keyFile = config.webhook.keyFile;
  if (config.webhook.mode === 'self') {
    const certs = new WebhookCertificateManager({
      store: new SecretCaKeyStore(clients, config.namespace, config.webhook.secretName),
      dnsNames: config.webhook.dnsNames,
      ipAddresses: config.webhook.ipAddresses,
      certDir: config.webhook.certDir,
      isLeader: () => controller.isLeader(),
      patcher: new KubeCaBundlePatcher(
        clients,
        {
          mutating: config.webhook.configurationName,
          validating: config.webhook.configurationName,
        },
        log,
      ),
      onServingChanged: () => servers.webhook?.reloadTls(),
      logger: log,
    });
    await certs.start();
    closers.push(() => certs.stop());
    certFile = certs.certFile;
    keyFile = certs.keyFile;
    // A new leader patches caBundle at once instead of at the next periodic check.
    let wasLeader = controller.isLeader();
    const leaderWatch = setInterval(() => {
      const leader = controller.isLeader();
      if (leader && !wasLeader) void certs.check();
      wasLeader = leader;
    }, 1_000);
    leaderWatch.unref();
    closers.push(() => clearInterval(leaderWatch));
  }
  const webhook = await createWebhookServer({
    tlsCertFile: certFile,
    tlsKeyFile: keyFile,
    snapshotSource: () =>
      controller.notReady() === undefined ? controller.admissionSnapshot() : undefined,
    config: {
      reviewers: { groups: config.reviewerGroups, users: config.reviewerUsers },
      ownNamespace: config.namespace,
      sidecar: {
        image: config.sidecarImage,
        ...(config.sidecarResources !== undefined ? { resources: config.sidecarResources } : {}),
      },
      trustDomain: config.trustDomain,
      controllerAddress: config.controllerAddress,
    },
    registry,
    logger: log.child({ part: 'webhook' }),
    listen: { host: config.webhookHost, port: config.webhookPort },
  });
  servers.webhook = webhook;
  closers.push(() => webhook.close(config.shutdownTimeoutMs));
  serversListening = true;
  log.info('controller serving', {
    server: clients.server,
    namespace: config.namespace,
    identity: controller.identity,
    admin: `${admin.address}:${admin.port}`,
    grpc: `${config.grpcHost}:${identityServer.port}`,
    webhook: `${config.webhookHost}:${webhook.port}`,
    webhookCertificates: config.webhook.mode,
    leaderElection: config.leaderElect,
  });
}

async function main(): Promise<number> {
  let config;
  try {
    config = await loadConfig(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`erpguard-controller: ${describeError(error)}\n\n${USAGE}`);
    return 2;
  }
  if (config.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const log = createLogger('controller', { level: config.logLevel });
  let running: Running | undefined;
  let code = 0;
  const signal = waitForSignal();
  try {
    const clients = createKubeClients(
      loadKubeConfig({
        ...(config.kubeconfig !== undefined ? { kubeconfigPath: config.kubeconfig } : {}),
        ...(config.context !== undefined ? { context: config.context } : {}),
        inCluster: config.inCluster,
      }),
    );
    if (config.reviewerGroups.length === 0 && config.reviewerUsers.length === 0) {
      log.warn('no reviewers configured: no policy can become Verified', {
        flag: '--reviewer-groups',
      });
    }
    const registry = createMetricsRegistry({ collectDefaultMetrics: true });
    const controller = new Controller({
      clients,
      registry,
      logger: log,
      namespace: config.namespace,
      reviewers: { groups: config.reviewerGroups, users: config.reviewerUsers },
      leaderElection: config.leaderElect
        ? {
            leaseName: config.leaseName,
            leaseDurationMs: config.leaseDurationMs,
            renewDeadlineMs: config.renewDeadlineMs,
            retryPeriodMs: config.retryPeriodMs,
          }
        : false,
      networkPolicies: {
        enabled: config.networkPolicies,
        adminIngressNamespaces: config.adminIngressNamespaces,
      },
      workers: config.workers,
      resyncPeriodMs: config.resyncPeriodMs,
      ...(config.identity !== undefined ? { identity: config.identity } : {}),
      ...(config.watchNamespace !== undefined ? { watchNamespace: config.watchNamespace } : {}),
    });
    const admin = new AdminServer({
      registry,
      host: config.adminHost,
      port: config.adminPort,
      logger: log,
    });
    running = { clients, controller, admin, registry, closers: [] };
    // A signal during start-up still shuts down what has started.
    const started = start(config, log, running);
    const first = await Promise.race([started.then(() => undefined), signal]);
    if (first === undefined) {
      log.info('shutting down', { signal: await signal });
    } else {
      log.info('shutting down during start-up', { signal: first });
    }
  } catch (error) {
    log.error('controller failed', { err: error });
    process.stderr.write(`erpguard-controller: ${describeError(error)}\n`);
    code = 1;
  }
  if (running !== undefined) {
    running.admin.markShuttingDown();
    // Servers first (they stop taking new work), then the controller releases the Lease.
    for (const close of running.closers.reverse()) {
      try {
        await close();
      } catch (error) {
        log.warn('shutdown step failed', { error: describeError(error) });
      }
    }
    await running.controller.stop(config.shutdownTimeoutMs);
    await running.admin.close();
    running.clients.close();
  }
  return code;
}

process.exitCode = await main();
// A leftover handle (a keep-alive socket) must not keep a stopped controller alive.
setTimeout(() => process.exit(), 2_000).unref();

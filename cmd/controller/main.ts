#!/usr/bin/env node
/**
 * erpguard-controller: wires the Kubernetes clients, the controller runtime and the admin
 * server, then waits for SIGTERM/SIGINT and shuts down gracefully (not ready at once, running
 * reconciles finish, the Lease is released so another replica takes over without waiting for
 * it to expire). The identity gRPC server and the admission webhook are added here later.
 */
import { Controller } from '../../pkg/controller/controller.js';
import { AdminServer } from '../../pkg/controller/admin-server.js';
import { describeError } from '../../pkg/errors/errors.js';
import { createKubeClients, loadKubeConfig } from '../../pkg/kube/client.js';
import { createLogger } from '../../pkg/telemetry/logger.js';
import { createMetricsRegistry } from '../../pkg/telemetry/metrics.js';

import { parseControllerConfig, USAGE } from './flags.js';

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

async function main(): Promise<number> {
  let config;
  try {
    config = parseControllerConfig(process.argv.slice(2), process.env);
  } catch (error) {
    process.stderr.write(`erpguard-controller: ${describeError(error)}\n\n${USAGE}`);
    return 2;
  }
  if (config.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const log = createLogger('controller', { level: config.logLevel });
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
    admin.addReadinessCheck('caches', () => controller.notReady());
    const address = await admin.listen();
    log.info('controller starting', {
      server: clients.server,
      namespace: config.namespace,
      identity: controller.identity,
      admin: `${address.address}:${address.port}`,
      leaderElection: config.leaderElect,
    });
    controller.start();

    const signal = await waitForSignal();
    log.info('shutting down', { signal });
    admin.markShuttingDown();
    await controller.stop(config.shutdownTimeoutMs);
    await admin.close();
    clients.close();
    return 0;
  } catch (error) {
    log.error('controller failed', { err: error });
    process.stderr.write(`erpguard-controller: ${describeError(error)}\n`);
    return 1;
  }
}

process.exitCode = await main();
// A leftover handle (a keep-alive socket) must not keep a stopped controller alive.
setTimeout(() => process.exit(), 2_000).unref();

/**
 * Publishes the workload CA's trust bundle as the ConfigMap `erpguard-trust-bundle` (key `ca.crt`)
 * in every enforced namespace, the way Istio publishes `istio-ca-root-cert`: a sidecar needs it
 * to trust the identity service before it has a certificate of its own. The injector projects it
 * next to the ServiceAccount token. Later bundles (root rotation) also reach sidecars on their
 * policy stream. Leader only; server-side apply under the controller's field manager.
 */
import { LABEL_ENFORCE } from '../api/v1alpha1/index.js';
import type { Logger } from '../telemetry/logger.js';
import { requestOptions } from './client.js';
import type { KubeClients } from './client.js';
import { kubeError } from './errors.js';
import { FIELD_MANAGER } from './writers.js';

export const TRUST_BUNDLE_CONFIGMAP = 'erpguard-trust-bundle';
export const TRUST_BUNDLE_KEY = 'ca.crt';

export interface TrustBundlePublisherOptions {
  clients: KubeClients;
  /** Namespaces with their labels (the controller's cache). */
  namespaces: () => readonly { name: string; labels: Record<string, string> }[];
  bundlePem: () => string;
  isLeader: () => boolean;
  logger: Logger;
  /** Re-check period (namespaces appear, a leader changes); default 15 s. */
  intervalMs?: number;
}

const enforced = (labels: Record<string, string>): boolean =>
  labels[LABEL_ENFORCE] === 'true' || labels[LABEL_ENFORCE] === 'audit';

export class TrustBundlePublisher {
  /** namespace → bundle last applied there, so unchanged namespaces cost no request. */
  private readonly applied = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly options: TrustBundlePublisherOptions) {}

  start(): void {
    void this.sync();
    this.timer = setInterval(() => void this.sync(), this.options.intervalMs ?? 15_000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One pass; concurrent calls share the pass in progress. */
  sync(): Promise<void> {
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<void> {
    if (!this.options.isLeader()) {
      // A new leader must not trust what a previous term wrote.
      this.applied.clear();
      return;
    }
    const pem = this.options.bundlePem();
    for (const ns of this.options.namespaces()) {
      if (!enforced(ns.labels) || this.applied.get(ns.name) === pem) continue;
      try {
        await this.options.clients.core.patchNamespacedConfigMap(
          {
            namespace: ns.name,
            name: TRUST_BUNDLE_CONFIGMAP,
            body: {
              apiVersion: 'v1',
              kind: 'ConfigMap',
              metadata: {
                name: TRUST_BUNDLE_CONFIGMAP,
                namespace: ns.name,
                labels: { 'app.kubernetes.io/managed-by': 'erpguard' },
              },
              data: { [TRUST_BUNDLE_KEY]: pem },
            },
            fieldManager: FIELD_MANAGER,
            force: true,
          },
          requestOptions(this.options.clients, 'apply'),
        );
        this.applied.set(ns.name, pem);
      } catch (error) {
        this.options.logger.warn('trust bundle not published', {
          namespace: ns.name,
          error: kubeError(`apply ConfigMap ${ns.name}/${TRUST_BUNDLE_CONFIGMAP}`, error).message,
        });
      }
    }
  }
}

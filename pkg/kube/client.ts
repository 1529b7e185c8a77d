/**
 * The API clients erpguard uses, built from a kubeconfig file or the in-cluster ServiceAccount.
 *
 * Two things client-node 1.x does not do are added to every request made with
 * {@link requestOptions}: a client-side timeout (none by default: a hung request would hold a
 * work-queue worker forever), and connection reuse (client-node builds a fresh https.Agent per
 * request, i.e. a TCP + TLS handshake per call; at a few hundred writes per second that
 * dominates the cost for both sides). The reused agent is keyed by the TLS material, so a
 * rotated client certificate gets a new agent.
 */
import { createHash } from 'node:crypto';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { AgentOptions as HttpsAgentOptions } from 'node:https';

import {
  AppsV1Api,
  AuthenticationV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  KubeConfig,
  NetworkingV1Api,
  Observable,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import type { ConfigurationOptions, ObservableMiddleware } from '@kubernetes/client-node';

import { ErpguardError, ErrorCode } from '../errors/errors.js';

export interface KubeConfigOptions {
  /** A kubeconfig file. Default: $KUBECONFIG, ~/.kube/config, or in-cluster. */
  kubeconfigPath?: string;
  /** Context to use instead of the file's current-context. */
  context?: string;
  /** Use the pod's ServiceAccount (KUBERNETES_SERVICE_HOST + the mounted token) and nothing else. */
  inCluster?: boolean;
}

export interface KubeClients {
  readonly kubeConfig: KubeConfig;
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly batch: BatchV1Api;
  readonly networking: NetworkingV1Api;
  readonly coordination: CoordinationV1Api;
  readonly authentication: AuthenticationV1Api;
  readonly events: EventsV1Api;
  readonly custom: CustomObjectsApi;
  /** Per-request timeout of every call made through {@link requestOptions}. */
  readonly requestTimeoutMs: number;
  /** The API server URL (for logs). */
  readonly server: string;
  /** Keep-alive connections shared by the calls made with requestOptions(). */
  readonly agents: AgentPool;
  /** Closes pooled connections (at shutdown). */
  close(): void;
}

/** One keep-alive agent per distinct TLS configuration. */
export class AgentPool {
  private readonly https = new Map<string, HttpsAgent>();
  private http: HttpAgent | undefined;

  constructor(private readonly maxSockets = 32) {}

  /** The pooled equivalent of a per-request agent made by client-node. */
  reuse(agent: HttpAgent | HttpsAgent | undefined): HttpAgent | HttpsAgent | undefined {
    if (agent instanceof HttpsAgent) {
      const o = (agent as HttpsAgent & { options: HttpsAgentOptions }).options;
      const hash = createHash('sha256');
      for (const part of [
        o.ca,
        o.cert,
        o.key,
        o.pfx,
        o.passphrase,
        o.servername,
        String(o.rejectUnauthorized),
      ]) {
        hash.update(
          JSON.stringify(Buffer.isBuffer(part) ? part.toString('base64') : (part ?? null)),
        );
      }
      const key = hash.digest('hex');
      let pooled = this.https.get(key);
      if (pooled === undefined) {
        // A rotated certificate makes a new key; the old agent's sockets are closed.
        for (const old of this.https.values()) old.destroy();
        this.https.clear();
        pooled = new HttpsAgent({
          ...o,
          keepAlive: true,
          maxSockets: this.maxSockets,
          scheduling: 'lifo',
        });
        this.https.set(key, pooled);
      }
      return pooled;
    }
    if (agent instanceof HttpAgent) {
      this.http ??= new HttpAgent({
        keepAlive: true,
        maxSockets: this.maxSockets,
        scheduling: 'lifo',
      });
      return this.http;
    }
    return agent;
  }

  destroy(): void {
    for (const a of this.https.values()) a.destroy();
    this.https.clear();
    this.http?.destroy();
    this.http = undefined;
  }
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/**
 * Loads a kubeconfig. Unlike client-node's loadFromDefault, this never falls back to
 * http://localhost:8080 when nothing is configured: that silent default turns a missing mount
 * into a confusing connection error much later.
 */
export function loadKubeConfig(options: KubeConfigOptions = {}): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (options.inCluster === true) {
      if (process.env['KUBERNETES_SERVICE_HOST'] === undefined) {
        throw new Error('KUBERNETES_SERVICE_HOST is not set: not running in a pod');
      }
      kc.loadFromCluster();
    } else if (options.kubeconfigPath !== undefined && options.kubeconfigPath !== '') {
      kc.loadFromFile(options.kubeconfigPath);
    } else {
      kc.loadFromDefault();
    }
    if (options.context !== undefined && options.context !== '') {
      if (kc.getContextObject(options.context) === null) {
        throw new Error(`context ${JSON.stringify(options.context)} is not in the kubeconfig`);
      }
      kc.setCurrentContext(options.context);
    }
  } catch (error) {
    throw new ErpguardError(
      ErrorCode.InvalidConfig,
      `kubeconfig: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  const cluster = kc.getCurrentCluster();
  if (cluster === null || cluster.server === '') {
    throw new ErpguardError(ErrorCode.InvalidConfig, 'kubeconfig: no current cluster');
  }
  if (cluster.name === 'cluster' && cluster.server === 'http://localhost:8080') {
    throw new ErpguardError(
      ErrorCode.InvalidConfig,
      'kubeconfig: none found (set --kubeconfig or KUBECONFIG, or run in a pod)',
    );
  }
  return kc;
}

export function createKubeClients(
  kubeConfig: KubeConfig,
  options: { requestTimeoutMs?: number } = {},
): KubeClients {
  const agents = new AgentPool();
  return {
    kubeConfig,
    agents,
    close: () => agents.destroy(),
    core: kubeConfig.makeApiClient(CoreV1Api),
    apps: kubeConfig.makeApiClient(AppsV1Api),
    batch: kubeConfig.makeApiClient(BatchV1Api),
    networking: kubeConfig.makeApiClient(NetworkingV1Api),
    coordination: kubeConfig.makeApiClient(CoordinationV1Api),
    authentication: kubeConfig.makeApiClient(AuthenticationV1Api),
    events: kubeConfig.makeApiClient(EventsV1Api),
    custom: kubeConfig.makeApiClient(CustomObjectsApi),
    requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    server: kubeConfig.getCurrentCluster()?.server ?? '',
  };
}

function transportMiddleware(
  timeoutMs: number,
  agents: AgentPool | undefined,
): ObservableMiddleware {
  return {
    pre: (request) => {
      request.setSignal(AbortSignal.timeout(timeoutMs));
      const agent = agents?.reuse(request.getAgent());
      if (agent !== undefined) request.setAgent(agent);
      return new Observable(Promise.resolve(request));
    },
    post: (response) => new Observable(Promise.resolve(response)),
  };
}

/**
 * Call options: a client timeout (default: the clients' request timeout), plus the
 * server-side-apply or merge-patch content type.
 */
export function requestOptions(
  clients: Pick<KubeClients, 'requestTimeoutMs'> & Partial<Pick<KubeClients, 'agents'>>,
  kind: 'plain' | 'apply' | 'merge' = 'plain',
  timeoutMs: number = clients.requestTimeoutMs,
): ConfigurationOptions {
  const base: ConfigurationOptions = {
    middleware: [transportMiddleware(timeoutMs, clients.agents)],
    middlewareMergeStrategy: 'append',
  };
  if (kind === 'apply')
    return setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply, base);
  if (kind === 'merge') return setHeaderOptions('Content-Type', PatchStrategy.MergePatch, base);
  return base;
}

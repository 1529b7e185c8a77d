/**
 * Keeps a Policy.Watch stream open to the identity server and holds the last good snapshot of
 * this module's policies. The connection is re-established with backoff whenever it drops; a
 * snapshot that fails validation is refused and the previous one stays in force (DESIGN.md §4.4:
 * keep the last good snapshot; with none, the sidecar denies).
 */
import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';

import { API_VERSION, KIND, type ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { decodeCertificates } from '../ca/pem.js';
import { methods, serverStream, type PolicySnapshotMessage } from '../proto/erpguard-proto.js';
import { silentLogger, type Logger } from '../telemetry/logger.js';
import { counter, gauge } from '../telemetry/metrics.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import type { WorkloadIdentityClient } from './client.js';
import { channelCredentials, channelOptions, type ServerConnection } from './tls.js';

export interface PolicySnapshotView {
  version: number;
  namespace: string;
  module: string;
  /** Verified policies whose destination is this module. */
  policies: ErpIntegrationPolicy[];
  revokedIdentities: { spiffeId: string; until: Date; reason: string }[];
  trustBundlePem: string;
  /** SPIFFE ID → module of the callers these policies name. */
  identityBindings: Map<string, string>;
  certificateTtlSeconds: number | null;
  receivedAt: Date;
}

/** How to authenticate a (re)connection: a client certificate, a token, or both. */
export interface WatchCredentials {
  trustBundlePem: string;
  keyPem?: string;
  certificateChainPem?: string;
  token?: string;
}

export interface PolicyWatchClientOptions extends ServerConnection {
  /** Empty: the server picks the caller's own module and namespace. */
  module?: string;
  namespace?: string;
  /** Asked on every (re)connection, so renewed certificates are used. */
  credentials: () => WatchCredentials | Promise<WatchCredentials>;
  backoff?: BackoffOptions;
  clock?: () => number;
  random?: () => number;
  logger?: Logger;
  registry?: Registry;
}

export type SnapshotListener = (snapshot: PolicySnapshotView) => void;

/** Credentials from a workload's current certificate (mTLS), with an optional token fallback. */
export function watchCredentialsFrom(
  identity: WorkloadIdentityClient,
  fallback?: { trustBundlePem: string; token: () => string | Promise<string> },
): () => Promise<WatchCredentials> {
  return async () => {
    const material = identity.current();
    if (material !== null) {
      return {
        trustBundlePem: material.trustBundlePem,
        keyPem: material.keyPem,
        certificateChainPem: material.certificateChainPem,
      };
    }
    if (fallback === undefined) throw new Error('no workload certificate yet');
    return { trustBundlePem: fallback.trustBundlePem, token: (await fallback.token()).trim() };
  };
}

function parsePolicy(json: string, module: string, index: number): ErpIntegrationPolicy {
  const value = JSON.parse(json) as unknown;
  const p = value as Partial<ErpIntegrationPolicy> | null;
  if (
    typeof p !== 'object' ||
    p === null ||
    p.apiVersion !== API_VERSION ||
    p.kind !== KIND ||
    typeof p.metadata?.name !== 'string' ||
    typeof p.spec !== 'object' ||
    !Array.isArray(p.spec.rules) ||
    typeof p.spec.source?.module !== 'string'
  ) {
    throw new Error(`policies[${index}] is not an ErpIntegrationPolicy`);
  }
  if (p.spec.destination?.module !== module) {
    throw new Error(
      `policies[${index}] is for module ${String(p.spec.destination?.module)}, not ${module}`,
    );
  }
  return value as ErpIntegrationPolicy;
}

/** Turns a wire snapshot into a view; throws on anything inconsistent. */
export function parseSnapshot(
  message: PolicySnapshotMessage,
  receivedAt: Date,
): PolicySnapshotView {
  if (message.module === '' || message.namespace === '')
    throw new Error('snapshot names no module');
  if (message.trustBundle !== '') decodeCertificates(message.trustBundle);
  const bindings = new Map<string, string>();
  for (const b of message.identityBindings) bindings.set(b.spiffeId, b.module);
  return {
    version: message.version,
    namespace: message.namespace,
    module: message.module,
    policies: message.policies.map((json, i) => parsePolicy(json, message.module, i)),
    revokedIdentities: message.revokedIdentities.map((r) => ({
      spiffeId: r.spiffeId,
      until: new Date(r.untilUnixMs),
      reason: r.reason,
    })),
    trustBundlePem: message.trustBundle,
    identityBindings: bindings,
    certificateTtlSeconds: message.certificateTtlSeconds > 0 ? message.certificateTtlSeconds : null,
    receivedAt,
  };
}

export class PolicyWatchClient {
  private readonly clock: () => number;
  private readonly log: Logger;
  private readonly backoff: Backoff;
  private readonly listeners = new Set<SnapshotListener>();
  private snapshot: PolicySnapshotView | null = null;
  private client: grpc.Client | null = null;
  private call: grpc.ClientReadableStream<PolicySnapshotMessage> | null = null;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private isConnected = false;
  private readyWaiters: ((snapshot: PolicySnapshotView) => void)[] = [];
  private readonly metrics;

  constructor(private readonly options: PolicyWatchClientOptions) {
    this.clock = options.clock ?? Date.now;
    this.log = options.logger ?? silentLogger();
    this.backoff = new Backoff(options.backoff, options.random ?? Math.random);
    const registry = options.registry;
    this.metrics =
      registry === undefined
        ? null
        : {
            connected: gauge(registry, {
              name: 'erpguard_policy_watch_connected',
              help: '1 while the policy stream to the identity server is open.',
            }),
            received: counter(registry, {
              name: 'erpguard_policy_snapshots_received_total',
              help: 'Policy snapshots received, by result (accepted or rejected).',
              labelNames: ['result'],
            }),
            version: gauge(registry, {
              name: 'erpguard_policy_snapshot_applied_version',
              help: 'Version of the policy snapshot in force.',
            }),
          };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.connect();
  }

  /** Resolves with the first snapshot (immediately if one is held). */
  ready(): Promise<PolicySnapshotView> {
    if (this.snapshot !== null) return Promise.resolve(this.snapshot);
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  /** The last good snapshot, or null if none was ever received (the sidecar then denies). */
  current(): PolicySnapshotView | null {
    return this.snapshot;
  }

  get connected(): boolean {
    return this.isConnected;
  }

  onSnapshot(listener: SnapshotListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stop(): void {
    this.running = false;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.teardown();
  }

  // === internals ===

  private async connect(): Promise<void> {
    if (!this.running) return;
    let credentials: WatchCredentials;
    try {
      credentials = await this.options.credentials();
    } catch (error) {
      this.retry('no credentials for the policy stream', error);
      return;
    }
    if (!this.running) return;
    const metadata = new grpc.Metadata();
    if (credentials.token !== undefined)
      metadata.set('authorization', `Bearer ${credentials.token}`);
    const clientMaterial =
      credentials.keyPem !== undefined && credentials.certificateChainPem !== undefined
        ? { keyPem: credentials.keyPem, certificateChainPem: credentials.certificateChainPem }
        : undefined;
    let client: grpc.Client;
    try {
      client = new grpc.Client(
        this.options.target,
        channelCredentials(this.options, credentials.trustBundlePem, clientMaterial),
        channelOptions(this.options),
      );
    } catch (error) {
      this.retry('cannot create the policy stream client', error);
      return;
    }
    this.client = client;
    const call = serverStream(
      client,
      methods.watch,
      {
        module: this.options.module ?? '',
        namespace: this.options.namespace ?? '',
        knownVersion: this.snapshot?.version ?? 0,
      },
      metadata,
      {},
    );
    this.call = call;
    call.on('data', (message: PolicySnapshotMessage) => this.receive(message));
    call.on('error', (error: grpc.ServiceError) => {
      if (this.call !== call) return;
      this.teardown();
      if (error.code === grpc.status.CANCELLED && !this.running) return;
      this.retry('policy stream failed', error);
    });
    call.on('end', () => {
      if (this.call !== call) return;
      this.teardown();
      this.retry('policy stream ended', null);
    });
  }

  private receive(message: PolicySnapshotMessage): void {
    let view: PolicySnapshotView;
    try {
      view = parseSnapshot(message, new Date(this.clock()));
    } catch (error) {
      this.metrics?.received.inc({ result: 'rejected' });
      this.log.error('policy snapshot refused; keeping the previous one', {
        err: error,
        version: message.version,
        keptVersion: this.snapshot?.version,
      });
      return;
    }
    if (!this.isConnected) {
      this.isConnected = true;
      this.metrics?.connected.set(1);
      this.backoff.reset();
      this.log.info('policy stream connected', { module: view.module, namespace: view.namespace });
    }
    this.snapshot = view;
    this.metrics?.received.inc({ result: 'accepted' });
    this.metrics?.version.set(view.version);
    this.log.info('policy snapshot applied', {
      version: view.version,
      policies: view.policies.length,
      revoked: view.revokedIdentities.length,
    });
    for (const resolve of this.readyWaiters.splice(0)) resolve(view);
    for (const listener of this.listeners) {
      try {
        listener(view);
      } catch (error) {
        this.log.error('snapshot listener failed', { err: error });
      }
    }
  }

  private teardown(): void {
    const call = this.call;
    this.call = null;
    call?.cancel();
    this.client?.close();
    this.client = null;
    if (this.isConnected) {
      this.isConnected = false;
      this.metrics?.connected.set(0);
    }
  }

  private retry(message: string, error: unknown): void {
    if (!this.running) return;
    const delay = this.backoff.next();
    this.log.warn(message, {
      err: error,
      retryInMs: delay,
      holdingVersion: this.snapshot?.version ?? null,
    });
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.connect(), delay);
    this.timer.unref();
  }
}

/**
 * The erpguard controller runtime: informers (supervised) → work queue (keyed by
 * namespace/name) → reconcilers (policy status, NetworkPolicies), Lease leader election for
 * writes, and the verified-policy set that in-process consumers (the gRPC policy service, the
 * admission webhook) subscribe to.
 *
 * Every replica runs informers, verification and the verified set, so every replica can serve
 * sidecars and admission; only the leader writes. The queue starts only after every cache has
 * synced: planning NetworkPolicies from a half-filled cache would delete or lock down what is in
 * fact allowed.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

import type { Registry } from 'prom-client';

import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import type { Snapshot } from '../admission/types.js';
import type { BackoffOptions } from '../kube/backoff.js';
import type { KubeClients } from '../kube/client.js';
import type { SupervisedInformer } from '../kube/informer.js';
import { DEFAULT_LEASE_NAME, KubeLeaseClient, LeaderElector } from '../kube/leader-election.js';
import {
  namespaceInformer,
  networkPolicyInformer,
  policyInformer,
  serviceAccountInformer,
  workloadInformers,
  workloadIntegrationsAnnotation,
  workloadModule,
} from '../kube/resources.js';
import type {
  InformerCommon,
  NamespaceObject,
  NetworkPolicyObject,
  ServiceAccountObject,
  WorkloadKind,
  WorkloadObject,
} from '../kube/resources.js';
import {
  KubeEventRecorder,
  KubeNetworkPolicyWriter,
  KubePolicyStatusWriter,
} from '../kube/writers.js';
import { LABEL_MODULE } from '../api/v1alpha1/index.js';
import type { ReviewerConfig } from '../policy/verify.js';
import { silentLogger } from '../telemetry/logger.js';
import type { Logger } from '../telemetry/logger.js';

import { createControllerMetrics } from './metrics.js';
import type { ControllerMetrics } from './metrics.js';
import { NETWORK_POLICY_SYNC_KEY, NetworkPolicySync } from './network-policy-sync.js';
import { ALWAYS_LEADER } from './ports.js';
import type { EventSink, LeaderGate, NetworkPolicyClient, StatusWriter } from './ports.js';
import { PolicyReconciler, policyKey } from './policy-reconciler.js';
import { VerifiedSet } from './verified-set.js';
import type { VerifiedPoliciesListener } from './verified-set.js';
import { isOwnedWorkload, WorkloadIndex } from './workload-index.js';
import { WorkQueue } from './work-queue.js';
import type { ReconcileResult } from './work-queue.js';

export interface LeaderElectionConfig {
  /** Lease name. Default erpguard-controller. */
  leaseName?: string;
  /** Default 15 s. */
  leaseDurationMs?: number;
  /** Default 10 s. */
  renewDeadlineMs?: number;
  /** Default 2 s. */
  retryPeriodMs?: number;
}

export interface ControllerOptions {
  clients: KubeClients;
  /** Who may approve policies. */
  reviewers: ReviewerConfig;
  registry: Registry;
  /** erpguard's own namespace: holds the Lease; never gets NetworkPolicies. */
  namespace: string;
  logger?: Logger;
  /** This replica's name in the Lease and in Events. Default: hostname + random suffix. */
  identity?: string;
  /** false: act as the only writer (one replica, tests). Default: elect with a Lease. */
  leaderElection?: false | LeaderElectionConfig;
  networkPolicies?: {
    /** Default true. */
    enabled?: boolean;
    /** Namespaces allowed to reach the sidecar admin port 15020. Default none. */
    adminIngressNamespaces?: readonly string[];
  };
  /** Only policies of this namespace (default: all namespaces). */
  watchNamespace?: string;
  /** Parallel reconciles. Default 4. */
  workers?: number;
  /** Every key is reconciled again this often, whatever happened. Default 10 min. */
  resyncPeriodMs?: number;
  /** Delay that batches NetworkPolicy syncs after a burst of changes. Default 200 ms. */
  networkPolicyDebounceMs?: number;
  informerBackoff?: BackoffOptions;
  now?: () => Date;
}

export interface ControllerInformers {
  policies: SupervisedInformer<ErpIntegrationPolicy>;
  namespaces: SupervisedInformer<NamespaceObject>;
  serviceAccounts: SupervisedInformer<ServiceAccountObject>;
  workloads: Map<WorkloadKind, SupervisedInformer<WorkloadObject>>;
  networkPolicies: SupervisedInformer<NetworkPolicyObject> | undefined;
}

export function defaultIdentity(): string {
  return `${hostname()}_${randomBytes(6).toString('hex')}`;
}

/** What decides whether a workload event can change dependents or the module set. */
function workloadFingerprint(w: WorkloadObject): string {
  return [
    w.metadata.namespace ?? '',
    workloadModule(w) ?? '',
    workloadIntegrationsAnnotation(w) ?? '',
    isOwnedWorkload(w) ? 'owned' : '',
    w.metadata.deletionTimestamp === undefined ? '' : 'deleting',
  ].join('\u0000');
}

export class Controller {
  readonly identity: string;
  readonly metrics: ControllerMetrics;
  readonly informers: ControllerInformers;
  readonly elector: LeaderElector | undefined;
  /** Resolves once every informer has synced and the work queue runs. */
  readonly started: Promise<void>;
  private resolveStarted!: () => void;
  private readonly log: Logger;
  private readonly queue: WorkQueue;
  private readonly verified: VerifiedSet;
  private readonly workloadIndex: WorkloadIndex;
  private readonly reconciler: PolicyReconciler;
  private readonly npSync: NetworkPolicySync | undefined;
  private readonly leader: LeaderGate;
  private readonly resyncPeriodMs: number;
  private readonly npDebounceMs: number;
  private readonly workloadFingerprints = new Map<string, string>();
  private resyncTimer: NodeJS.Timeout | undefined;
  private running = false;
  private snapshotVersion = 0;
  private snapshot: { version: number; value: Snapshot } | undefined;

  constructor(private readonly options: ControllerOptions) {
    const { clients } = options;
    this.identity = options.identity ?? defaultIdentity();
    this.log = (options.logger ?? silentLogger()).child({ controller: 'erpguard' });
    this.metrics = createControllerMetrics(options.registry);
    this.resyncPeriodMs = options.resyncPeriodMs ?? 600_000;
    this.npDebounceMs = options.networkPolicyDebounceMs ?? 200;
    this.started = new Promise((resolve) => (this.resolveStarted = resolve));
    const now = options.now ?? ((): Date => new Date());

    const common: InformerCommon = {
      logger: this.log,
      onRestart: ({ informer }) => this.metrics.informerRestarts.inc({ informer }),
      ...(options.informerBackoff ? { backoff: options.informerBackoff } : {}),
    };
    const npEnabled = options.networkPolicies?.enabled !== false;
    this.informers = {
      policies: policyInformer(clients, {
        ...common,
        ...(options.watchNamespace !== undefined ? { namespace: options.watchNamespace } : {}),
      }),
      namespaces: namespaceInformer(clients, common),
      serviceAccounts: serviceAccountInformer(clients, common),
      workloads: new Map(),
      networkPolicies: npEnabled ? networkPolicyInformer(clients, common) : undefined,
    };
    for (const [kind, informer] of workloadInformers(clients, common)) {
      this.informers.workloads.set(kind, informer);
    }

    this.elector =
      options.leaderElection === false
        ? undefined
        : new LeaderElector({
            client: new KubeLeaseClient(
              clients,
              options.namespace,
              options.leaderElection?.leaseName ?? DEFAULT_LEASE_NAME,
            ),
            identity: this.identity,
            ...(options.leaderElection?.leaseDurationMs !== undefined
              ? { leaseDurationMs: options.leaderElection.leaseDurationMs }
              : {}),
            ...(options.leaderElection?.renewDeadlineMs !== undefined
              ? { renewDeadlineMs: options.leaderElection.renewDeadlineMs }
              : {}),
            ...(options.leaderElection?.retryPeriodMs !== undefined
              ? { retryPeriodMs: options.leaderElection.retryPeriodMs }
              : {}),
            logger: this.log,
            onStartedLeading: () => {
              this.metrics.leader.set(1);
              // Whatever the previous leader left unwritten is written now.
              if (this.running) this.enqueueAll();
            },
            onStoppedLeading: () => this.metrics.leader.set(0),
          });
    this.leader = this.elector ?? ALWAYS_LEADER;
    if (this.elector === undefined) this.metrics.leader.set(1);
    else this.metrics.leader.set(0);

    this.verified = new VerifiedSet(this.log, (size) => {
      this.metrics.verifiedPolicies.set(size);
      this.enqueueNetworkPolicySync();
    });
    this.workloadIndex = new WorkloadIndex(() => this.allWorkloads());

    const status: StatusWriter = new KubePolicyStatusWriter(clients);
    const events: EventSink = new KubeEventRecorder(clients, this.identity);
    this.reconciler = new PolicyReconciler({
      policies: this.informers.policies,
      status,
      events,
      leader: this.leader,
      verified: this.verified,
      workloads: this.workloadIndex,
      reviewers: options.reviewers,
      metrics: this.metrics,
      logger: this.log,
      now,
    });
    const npInformer = this.informers.networkPolicies;
    const npClient: NetworkPolicyClient = new KubeNetworkPolicyWriter(clients);
    this.npSync =
      npInformer === undefined
        ? undefined
        : new NetworkPolicySync({
            policies: this.informers.policies,
            namespaces: this.informers.namespaces,
            workloads: this.workloadIndex,
            verified: this.verified,
            live: npInformer,
            client: npClient,
            leader: this.leader,
            metrics: this.metrics,
            logger: this.log,
            options: {
              ownNamespace: options.namespace,
              ...(options.networkPolicies?.adminIngressNamespaces !== undefined
                ? { adminIngressNamespaces: options.networkPolicies.adminIngressNamespaces }
                : {}),
            },
          });

    this.queue = new WorkQueue((key) => this.handle(key), {
      workers: options.workers ?? 4,
      onDepth: (depth) => this.metrics.workqueueDepth.set(depth),
      onResult: (key, outcome, durationMs, error) => {
        this.metrics.reconcileTotal.inc({ result: outcome });
        this.metrics.reconcileDuration.observe(durationMs / 1000);
        if (error !== undefined) {
          this.log.warn('reconcile failed', {
            key: key === NETWORK_POLICY_SYNC_KEY ? 'networkpolicies' : key,
            retry: outcome === 'error',
            err: error,
          });
        }
      },
    });
    this.wireEvents();
  }

  /** Starts informers and leader election; the queue follows once all caches synced. */
  start(): void {
    if (this.running) return;
    this.running = true;
    for (const informer of this.allInformers()) informer.start();
    this.elector?.start();
    void Promise.all(this.allInformers().map((i) => i.synced)).then(() => {
      if (!this.running) return;
      this.log.info('caches synced; starting the work queue', {
        policies: this.informers.policies.list().length,
      });
      this.queue.start();
      this.enqueueAll();
      this.resyncTimer = setInterval(() => this.enqueueAll(), this.resyncPeriodMs);
      this.resyncTimer.unref();
      this.resolveStarted();
    });
  }

  /**
   * Graceful stop: running reconciles finish (up to `timeoutMs`), the Lease is released so a
   * successor takes over at once, informers stop.
   */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.resyncTimer !== undefined) clearInterval(this.resyncTimer);
    const drained = await this.queue.shutdown(timeoutMs);
    if (!drained) this.log.warn('reconciles still running at shutdown');
    await this.elector?.stop();
    this.metrics.leader.set(0);
    await Promise.all(this.allInformers().map((i) => i.stop()));
    this.log.info('controller stopped');
  }

  /** Readiness: undefined when every cache has synced, else which have not. */
  notReady(): string | undefined {
    const pending = this.allInformers()
      .filter((i) => !i.hasSynced())
      .map((i) => i.name);
    return pending.length === 0 ? undefined : `caches not synced: ${pending.join(', ')}`;
  }

  isLeader(): boolean {
    return this.leader.isLeader();
  }

  /**
   * Subscribes to the verified policies (called at once with the current list, then after
   * every change, coalesced). A policy's Ready condition turns True once a delivery containing
   * its current spec reached the listeners. Returns an unsubscribe function.
   */
  onVerifiedPoliciesChanged(listener: VerifiedPoliciesListener): () => void {
    const unsubscribe = this.verified.subscribe(listener);
    // Ready depends on publication: let every policy re-evaluate it.
    if (this.running) this.enqueueAll();
    return unsubscribe;
  }

  /** The current verified policies. */
  verifiedPolicies(): ErpIntegrationPolicy[] {
    return this.verified.list();
  }

  /**
   * Cluster state for the admission webhook (pkg/admission Snapshot): the same object until
   * a policy, ServiceAccount or Namespace changes, as the webhook's index expects.
   */
  admissionSnapshot(): Snapshot {
    if (this.snapshot?.version === this.snapshotVersion) return this.snapshot.value;
    const value: Snapshot = {
      policies: this.informers.policies.list(),
      serviceAccounts: this.informers.serviceAccounts.list().map((sa) => {
        const module = sa.metadata.labels?.[LABEL_MODULE];
        return {
          namespace: sa.metadata.namespace ?? '',
          name: sa.metadata.name,
          ...(module !== undefined ? { module } : {}),
        };
      }),
      namespaces: this.informers.namespaces
        .list()
        .map((ns) => ({ name: ns.metadata.name, labels: ns.metadata.labels ?? {} })),
    };
    this.snapshot = { version: this.snapshotVersion, value };
    return value;
  }

  /** Reconciles every policy (and the NetworkPolicies) again. */
  enqueueAll(): void {
    for (const p of this.informers.policies.list()) {
      if (p.metadata?.namespace !== undefined)
        this.queue.add(policyKey(p.metadata.namespace, p.metadata.name));
    }
    this.enqueueNetworkPolicySync();
  }

  private enqueueNetworkPolicySync(): void {
    if (this.npSync !== undefined) this.queue.addAfter(NETWORK_POLICY_SYNC_KEY, this.npDebounceMs);
  }

  private async handle(key: string): Promise<ReconcileResult> {
    if (key === NETWORK_POLICY_SYNC_KEY) {
      await this.npSync?.sync();
      return {};
    }
    return this.reconciler.reconcile(key);
  }

  private allInformers(): SupervisedInformer<unknown>[] {
    const list: SupervisedInformer<unknown>[] = [
      this.informers.policies as SupervisedInformer<unknown>,
      this.informers.namespaces as SupervisedInformer<unknown>,
      this.informers.serviceAccounts as SupervisedInformer<unknown>,
      ...([...this.informers.workloads.values()] as SupervisedInformer<unknown>[]),
    ];
    if (this.informers.networkPolicies !== undefined) {
      list.push(this.informers.networkPolicies as SupervisedInformer<unknown>);
    }
    return list;
  }

  private *allWorkloads(): Iterable<WorkloadObject> {
    for (const informer of this.informers.workloads.values()) yield* informer.list();
  }

  private wireEvents(): void {
    const onPolicy = (p: ErpIntegrationPolicy): void => {
      this.snapshotVersion += 1;
      if (p.metadata?.namespace === undefined) return;
      this.queue.add(policyKey(p.metadata.namespace, p.metadata.name));
      // Modules named by any policy (verified or not) get a NetworkPolicy.
      this.enqueueNetworkPolicySync();
    };
    this.informers.policies.on({ add: onPolicy, update: onPolicy, delete: onPolicy });

    const onNamespace = (): void => {
      this.snapshotVersion += 1;
      this.enqueueNetworkPolicySync();
    };
    this.informers.namespaces.on({ add: onNamespace, update: onNamespace, delete: onNamespace });
    const onSa = (): void => {
      this.snapshotVersion += 1;
    };
    this.informers.serviceAccounts.on({ add: onSa, update: onSa, delete: onSa });

    for (const informer of this.informers.workloads.values()) {
      informer.on({
        add: (w) => this.onWorkload(w, false),
        update: (w) => this.onWorkload(w, false),
        delete: (w) => this.onWorkload(w, true),
      });
    }
    // A managed NetworkPolicy edited or deleted by hand is repaired.
    const onNp = (): void => this.enqueueNetworkPolicySync();
    this.informers.networkPolicies?.on({ add: onNp, update: onNp, delete: onNp });
  }

  private onWorkload(w: WorkloadObject, deleted: boolean): void {
    const objKey = `${w.kind}/${w.metadata.namespace ?? ''}/${w.metadata.name}`;
    const before = this.workloadFingerprints.get(objKey);
    const after = deleted ? undefined : workloadFingerprint(w);
    if (before === after) return; // scaling, status, unrelated labels: nothing to do
    if (after === undefined) this.workloadFingerprints.delete(objKey);
    else this.workloadFingerprints.set(objKey, after);
    this.workloadIndex.invalidate();
    this.enqueueNetworkPolicySync();
    const ns = w.metadata.namespace;
    const module = workloadModule(w);
    for (const p of this.informers.policies.list()) {
      const pns = p.metadata?.namespace;
      if (pns === undefined) continue;
      const listed = (p.status?.dependents ?? []).some(
        (d) => d.kind === w.kind && d.name === w.metadata.name && d.namespace === ns,
      );
      const matches =
        module !== undefined &&
        p.spec?.source?.module === module &&
        (p.spec.source.namespace ?? pns) === ns;
      if (listed || matches) this.queue.add(policyKey(pns, p.metadata.name));
    }
  }
}

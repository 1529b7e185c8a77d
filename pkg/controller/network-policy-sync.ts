/**
 * Keeps the NetworkPolicies erpguard manages equal to the planner's desired set: applies the
 * missing or drifted ones (server-side apply), deletes the ones no longer wanted, and leaves alone
 * a same-named NetworkPolicy that someone else created (logged with reason NetworkPolicyNameTaken:
 * taking it over would silently drop that owner's rules).
 *
 * Runs as one work-queue key, so it is serialised, deduplicated and retried with backoff; every
 * trigger (policy verified or not, namespace label, module appearing or disappearing, a managed
 * NetworkPolicy edited or deleted by hand) just enqueues it.
 */
import { planNetworkPolicies, networkPolicySpecEquals } from '../reconcile/network-policy.js';
import type { DesiredNetworkPolicy, PolicyVerdict } from '../reconcile/network-policy.js';
import { LABEL_MANAGED_BY, MANAGED_BY_VALUE } from '../reconcile/network-policy.js';
import type { Logger } from '../telemetry/logger.js';

import type { ControllerMetrics } from './metrics.js';
import type {
  LeaderGate,
  NamespaceStore,
  NetworkPolicyClient,
  NetworkPolicyStore,
  PolicyStore,
} from './ports.js';
import { policyKey } from './policy-reconciler.js';
import type { VerifiedSet } from './verified-set.js';
import type { WorkloadIndex } from './workload-index.js';

/** The work-queue key of the NetworkPolicy sync (cannot collide with `namespace/name`). */
export const NETWORK_POLICY_SYNC_KEY = '\u0000networkpolicies';

export interface NetworkPolicySyncOptions {
  ownNamespace?: string;
  adminIngressNamespaces?: readonly string[];
}

export interface NetworkPolicySyncDeps {
  policies: PolicyStore;
  namespaces: NamespaceStore;
  workloads: WorkloadIndex;
  verified: VerifiedSet;
  live: NetworkPolicyStore;
  client: NetworkPolicyClient;
  leader: LeaderGate;
  metrics: ControllerMetrics;
  logger: Logger;
  options: NetworkPolicySyncOptions;
}

export interface SyncSummary {
  applied: number;
  deleted: number;
  unchanged: number;
  nameTaken: number;
  skippedNotLeader: boolean;
}

const npKey = (namespace: string, name: string): string => `${namespace}/${name}`;

export class NetworkPolicySync {
  constructor(private readonly deps: NetworkPolicySyncDeps) {}

  /** The desired set from the caches (pure planner). */
  plan(): DesiredNetworkPolicy[] {
    const { deps } = this;
    const policies: PolicyVerdict[] = deps.policies.list().map((policy) => ({
      policy,
      verified: deps.verified.has(
        policyKey(policy.metadata?.namespace ?? '', policy.metadata?.name ?? ''),
      ),
    }));
    return planNetworkPolicies({
      policies,
      namespaces: deps.namespaces
        .list()
        .map((ns) => ({ name: ns.metadata.name, labels: ns.metadata.labels ?? {} })),
      workloadModules: deps.workloads.moduleList(),
      ...(deps.options.ownNamespace !== undefined
        ? { ownNamespace: deps.options.ownNamespace }
        : {}),
      ...(deps.options.adminIngressNamespaces !== undefined
        ? { adminIngressNamespaces: deps.options.adminIngressNamespaces }
        : {}),
    });
  }

  async sync(): Promise<SyncSummary> {
    const { deps } = this;
    const desired = this.plan();
    const live = new Map(
      deps.live.list().map((np) => [npKey(np.metadata.namespace ?? '', np.metadata.name), np]),
    );
    const summary: SyncSummary = {
      applied: 0,
      deleted: 0,
      unchanged: 0,
      nameTaken: 0,
      skippedNotLeader: false,
    };
    const toApply = desired.filter((np) => {
      const current = live.get(npKey(np.metadata.namespace, np.metadata.name));
      const same =
        current !== undefined &&
        current.metadata.labels?.[LABEL_MANAGED_BY] === MANAGED_BY_VALUE &&
        networkPolicySpecEquals(current.spec, np.spec);
      if (same) summary.unchanged += 1;
      return !same;
    });
    const wanted = new Set(desired.map((np) => npKey(np.metadata.namespace, np.metadata.name)));
    const toDelete = [...live.entries()].filter(([k]) => !wanted.has(k)).map(([, np]) => np);
    if (toApply.length === 0 && toDelete.length === 0) return summary;
    if (!deps.leader.isLeader()) {
      deps.metrics.writesSkipped.inc({ kind: 'networkpolicy' }, toApply.length + toDelete.length);
      summary.skippedNotLeader = true;
      return summary;
    }
    const errors: unknown[] = [];
    for (const np of toApply) {
      try {
        if (await this.applyOne(np, live.has(npKey(np.metadata.namespace, np.metadata.name)))) {
          summary.applied += 1;
        } else {
          summary.nameTaken += 1;
        }
      } catch (error) {
        errors.push(error);
      }
    }
    for (const np of toDelete) {
      const ns = np.metadata.namespace ?? '';
      try {
        await deps.client.delete(ns, np.metadata.name, np.metadata.uid);
        deps.metrics.networkPolicyWrites.inc({ op: 'delete' });
        summary.deleted += 1;
        deps.logger.info('network policy deleted', { namespace: ns, name: np.metadata.name });
      } catch (error) {
        errors.push(error);
      }
    }
    // Everything that could be done was done; one failure makes the whole key retry.
    if (errors.length > 0) throw errors[0];
    return summary;
  }

  /** False when a NetworkPolicy of that name exists and is not ours. */
  private async applyOne(np: DesiredNetworkPolicy, known: boolean): Promise<boolean> {
    const { deps } = this;
    const { namespace, name } = np.metadata;
    if (!known) {
      const existing = await deps.client.read(namespace, name);
      if (existing !== null && existing.labels?.[LABEL_MANAGED_BY] !== MANAGED_BY_VALUE) {
        deps.logger.warn('network policy name taken; not touching it', {
          reason: 'NetworkPolicyNameTaken',
          namespace,
          name,
        });
        return false;
      }
    }
    await deps.client.apply({ ...np, spec: { ...np.spec } });
    deps.metrics.networkPolicyWrites.inc({ op: 'apply' });
    deps.logger.info('network policy applied', {
      namespace,
      name,
      rules: np.spec.ingress?.length ?? 0,
    });
    return true;
  }
}

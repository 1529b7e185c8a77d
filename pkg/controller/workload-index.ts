/**
 * What the controller derives from workloads: the dependents of each policy (workloads of the
 * policy's source module, in its source namespace, that declare its destination in
 * `erpguard.io/integrations`) and the set of modules running in each namespace (for the
 * NetworkPolicy planner).
 *
 * Only top-level workloads count: a Pod created by a ReplicaSet, a ReplicaSet created by a
 * Deployment or a Job created by a CronJob is reported through its owner, so a Deployment with
 * 50 replicas is one dependent, not 52.
 */
import type { DependentWorkload } from '../api/v1alpha1/index.js';
import { parseIntegrations } from '../admission/gate.js';
import {
  WORKLOAD_KINDS,
  workloadIntegrationsAnnotation,
  workloadModule,
} from '../kube/resources.js';
import type { WorkloadObject } from '../kube/resources.js';
import type { ModuleInNamespace } from '../reconcile/network-policy.js';

/** The CRD's bound on status.dependents. */
export const MAX_DEPENDENTS = 256;

const OWNER_KINDS: ReadonlySet<string> = new Set(WORKLOAD_KINDS);

/** Created by another workload kind we watch (then that owner is the dependent). */
export function isOwnedWorkload(w: WorkloadObject): boolean {
  return (w.metadata.ownerReferences ?? []).some(
    (r) => r.controller === true && OWNER_KINDS.has(r.kind),
  );
}

const depKey = (namespace: string, module: string, destination: string): string =>
  `${namespace}\u0000${module}\u0000${destination}`;

export function compareDependents(a: DependentWorkload, b: DependentWorkload): number {
  return (
    a.namespace.localeCompare(b.namespace) ||
    a.kind.localeCompare(b.kind) ||
    a.name.localeCompare(b.name)
  );
}

/**
 * A lazily rebuilt index over the workload caches: invalidate() on every workload event, and the
 * next lookup rebuilds it once (O(workloads)), instead of scanning all workloads per policy.
 */
export class WorkloadIndex {
  private dependents: Map<string, DependentWorkload[]> | undefined;
  private modules: ModuleInNamespace[] | undefined;

  constructor(private readonly source: () => Iterable<WorkloadObject>) {}

  invalidate(): void {
    this.dependents = undefined;
    this.modules = undefined;
  }

  /** Dependents of a policy edge, sorted, at most MAX_DEPENDENTS (and whether some were cut). */
  dependentsOf(
    namespace: string,
    module: string,
    destination: string,
  ): { dependents: DependentWorkload[]; truncated: boolean } {
    this.build();
    const all = this.dependents?.get(depKey(namespace, module, destination)) ?? [];
    return { dependents: all.slice(0, MAX_DEPENDENTS), truncated: all.length > MAX_DEPENDENTS };
  }

  /** Every (namespace, module) that has at least one workload, sorted. */
  moduleList(): readonly ModuleInNamespace[] {
    this.build();
    return this.modules ?? [];
  }

  private build(): void {
    if (this.dependents !== undefined && this.modules !== undefined) return;
    const deps = new Map<string, DependentWorkload[]>();
    const modules = new Map<string, ModuleInNamespace>();
    for (const w of this.source()) {
      const ns = w.metadata.namespace;
      const module = workloadModule(w);
      if (ns === undefined || module === undefined || module === '') continue;
      modules.set(`${ns}/${module}`, { namespace: ns, module });
      if (isOwnedWorkload(w) || w.metadata.deletionTimestamp !== undefined) continue;
      for (const dst of parseIntegrations(workloadIntegrationsAnnotation(w)).modules) {
        const k = depKey(ns, module, dst);
        const list = deps.get(k) ?? [];
        list.push({ kind: w.kind, name: w.metadata.name, namespace: ns });
        deps.set(k, list);
      }
    }
    for (const list of deps.values()) list.sort(compareDependents);
    this.dependents = deps;
    this.modules = [...modules.values()].sort(
      (a, b) => a.namespace.localeCompare(b.namespace) || a.module.localeCompare(b.module),
    );
  }
}

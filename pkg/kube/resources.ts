/**
 * Informers for the kinds the controller reads, and the trimmed shapes they cache.
 *
 * Only what the controller needs is kept (memory scales with the cluster, not with erpguard):
 * policies whole (minus managedFields); Namespaces and ServiceAccounts as metadata; workloads as
 * metadata plus their pod template's labels and annotations; NetworkPolicies that erpguard manages
 * (label selector) as metadata plus spec. Pods are listed only when they carry a module label.
 * List results of the typed APIs are class instances with Date fields while watch events are
 * plain JSON; the projection below gives both the same plain shape.
 */
import {
  ANNOTATION_INTEGRATIONS,
  GROUP,
  LABEL_MODULE,
  PLURAL,
  VERSION,
} from '../api/v1alpha1/index.js';
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import type { Logger } from '../telemetry/logger.js';

import type { BackoffOptions } from './backoff.js';
import { requestOptions } from './client.js';
import type { KubeClients } from './client.js';
import { SupervisedInformer } from './informer.js';
import type { ListResult, SupervisedInformerOptions } from './informer.js';

import { LABEL_MANAGED_BY, MANAGED_BY_VALUE } from '../reconcile/network-policy.js';

/** Label on every object erpguard creates and garbage-collects (defined by the planner). */
export { LABEL_MANAGED_BY, MANAGED_BY_VALUE };

export interface OwnerReferenceLite {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
}

export interface ObjectMetaLite {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReferenceLite[];
  deletionTimestamp?: string;
}

export interface NamespaceObject {
  kind: 'Namespace';
  metadata: ObjectMetaLite;
}

export interface ServiceAccountObject {
  kind: 'ServiceAccount';
  metadata: ObjectMetaLite;
}

export const WORKLOAD_KINDS = [
  'Deployment',
  'StatefulSet',
  'DaemonSet',
  'ReplicaSet',
  'Job',
  'CronJob',
  'Pod',
] as const;
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

/** A workload reduced to what dependents and module discovery need. */
export interface WorkloadObject {
  kind: WorkloadKind;
  metadata: ObjectMetaLite;
  /** Labels and annotations of the pod template (of the Pod itself for kind Pod). */
  template: { labels: Record<string, string>; annotations: Record<string, string> };
}

export interface NetworkPolicyObject {
  kind: 'NetworkPolicy';
  metadata: ObjectMetaLite;
  spec: Record<string, unknown>;
}

type Json = Record<string, unknown>;

const isMap = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function stringRecord(v: unknown): Record<string, string> | undefined {
  if (!isMap(v)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) if (typeof val === 'string') out[k] = val;
  return out;
}

function timeString(v: unknown): string | undefined {
  if (v instanceof Date) return v.toISOString();
  return typeof v === 'string' ? v : undefined;
}

export function projectMeta(meta: unknown): ObjectMetaLite {
  const m = isMap(meta) ? meta : {};
  const out: ObjectMetaLite = { name: typeof m['name'] === 'string' ? m['name'] : '' };
  if (typeof m['namespace'] === 'string') out.namespace = m['namespace'];
  if (typeof m['uid'] === 'string') out.uid = m['uid'];
  if (typeof m['resourceVersion'] === 'string') out.resourceVersion = m['resourceVersion'];
  if (typeof m['generation'] === 'number') out.generation = m['generation'];
  const labels = stringRecord(m['labels']);
  if (labels !== undefined) out.labels = labels;
  const annotations = stringRecord(m['annotations']);
  if (annotations !== undefined) out.annotations = annotations;
  const deletion = timeString(m['deletionTimestamp']);
  if (deletion !== undefined) out.deletionTimestamp = deletion;
  if (Array.isArray(m['ownerReferences'])) {
    const str = (v: unknown): string => (typeof v === 'string' ? v : '');
    out.ownerReferences = m['ownerReferences'].filter(isMap).map((r) => ({
      apiVersion: str(r['apiVersion']),
      kind: str(r['kind']),
      name: str(r['name']),
      uid: str(r['uid']),
      ...(r['controller'] === true ? { controller: true } : {}),
    }));
  }
  return out;
}

/** Replaces every own property of `target` with those of `shape` (the cache keeps `target`). */
function reshape(target: object, shape: object): void {
  if (target === shape) return;
  const t = target as Json;
  for (const key of Object.keys(t)) delete t[key];
  Object.assign(t, shape);
}

function digMap(obj: unknown, ...path: string[]): Json | undefined {
  let cur: unknown = obj;
  for (const k of path) {
    if (!isMap(cur)) return undefined;
    cur = cur[k];
  }
  return isMap(cur) ? cur : undefined;
}

const TEMPLATE_PATH: Record<WorkloadKind, readonly string[]> = {
  Deployment: ['spec', 'template', 'metadata'],
  StatefulSet: ['spec', 'template', 'metadata'],
  DaemonSet: ['spec', 'template', 'metadata'],
  ReplicaSet: ['spec', 'template', 'metadata'],
  Job: ['spec', 'template', 'metadata'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template', 'metadata'],
  Pod: ['metadata'],
};

/** Already projected (relist hands cached objects back through trim; it must be idempotent). */
function isProjectedWorkload(obj: unknown): obj is WorkloadObject {
  return isMap(obj) && isMap(obj['template']) && !('spec' in obj);
}

export function projectWorkload(kind: WorkloadKind, obj: unknown): WorkloadObject {
  if (isProjectedWorkload(obj)) return obj;
  const tmpl = digMap(obj, ...TEMPLATE_PATH[kind]);
  return {
    kind,
    metadata: projectMeta(isMap(obj) ? obj['metadata'] : undefined),
    template: {
      labels: stringRecord(tmpl?.['labels']) ?? {},
      annotations: stringRecord(tmpl?.['annotations']) ?? {},
    },
  };
}

/** Plain JSON copy without undefined members (typed list results are class instances). */
function plain(v: unknown): Json {
  const copy: unknown = JSON.parse(JSON.stringify(v ?? {}));
  return isMap(copy) ? copy : {};
}

export interface InformerCommon {
  logger?: Logger;
  backoff?: BackoffOptions;
  onRestart?: SupervisedInformerOptions<unknown>['onRestart'];
  /** Timeout of the initial and re-list calls (default 60 s: lists can be large). */
  listTimeoutMs?: number;
}

function common<T>(
  name: string,
  clients: KubeClients,
  opts: InformerCommon,
): Pick<SupervisedInformerOptions<T>, 'name' | 'kubeConfig'> &
  Partial<Pick<SupervisedInformerOptions<T>, 'logger' | 'backoff' | 'onRestart'>> {
  return {
    name,
    kubeConfig: clients.kubeConfig,
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
    ...(opts.onRestart ? { onRestart: opts.onRestart } : {}),
  };
}

const listOptions = (
  clients: KubeClients,
  opts: InformerCommon,
): ReturnType<typeof requestOptions> =>
  requestOptions(clients, 'plain', opts.listTimeoutMs ?? 60_000);

function asList<T>(res: {
  items?: unknown;
  metadata?: { resourceVersion?: string };
}): ListResult<T> {
  const items = Array.isArray(res.items) ? (res.items as T[]) : [];
  const rv = res.metadata?.resourceVersion;
  return { items, ...(rv !== undefined ? { metadata: { resourceVersion: rv } } : {}) };
}

/** ErpIntegrationPolicies of all namespaces, or of one. */
export function policyInformer(
  clients: KubeClients,
  opts: InformerCommon & { namespace?: string } = {},
): SupervisedInformer<ErpIntegrationPolicy> {
  const ns = opts.namespace;
  const path =
    ns === undefined
      ? `/apis/${GROUP}/${VERSION}/${PLURAL}`
      : `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${PLURAL}`;
  return new SupervisedInformer<ErpIntegrationPolicy>({
    ...common('policies', clients, opts),
    path,
    list: async () =>
      asList<ErpIntegrationPolicy>(
        (ns === undefined
          ? await clients.custom.listClusterCustomObject(
              { group: GROUP, version: VERSION, plural: PLURAL },
              listOptions(clients, opts),
            )
          : await clients.custom.listNamespacedCustomObject(
              { group: GROUP, version: VERSION, namespace: ns, plural: PLURAL },
              listOptions(clients, opts),
            )) as { items?: unknown },
      ),
    // List items carry no apiVersion/kind; the planner and SSA bodies want them.
    trim: (p) => {
      (p as { apiVersion: string }).apiVersion = `${GROUP}/${VERSION}`;
      (p as { kind: string }).kind = 'ErpIntegrationPolicy';
    },
  });
}

export function namespaceInformer(
  clients: KubeClients,
  opts: InformerCommon = {},
): SupervisedInformer<NamespaceObject> {
  return new SupervisedInformer<NamespaceObject>({
    ...common('namespaces', clients, opts),
    path: '/api/v1/namespaces',
    list: async () => asList(await clients.core.listNamespace({}, listOptions(clients, opts))),
    trim: (o) => reshape(o, { kind: 'Namespace', metadata: projectMeta(o.metadata) }),
  });
}

/** All ServiceAccounts: the webhook must tell "unlabelled" from "missing". */
export function serviceAccountInformer(
  clients: KubeClients,
  opts: InformerCommon = {},
): SupervisedInformer<ServiceAccountObject> {
  return new SupervisedInformer<ServiceAccountObject>({
    ...common('serviceaccounts', clients, opts),
    path: '/api/v1/serviceaccounts',
    list: async () =>
      asList(await clients.core.listServiceAccountForAllNamespaces({}, listOptions(clients, opts))),
    trim: (o) => reshape(o, { kind: 'ServiceAccount', metadata: projectMeta(o.metadata) }),
  });
}

function workloadList(
  kind: WorkloadKind,
  clients: KubeClients,
  opts: InformerCommon,
): { path: string; list: () => Promise<ListResult<WorkloadObject>>; labelSelector?: string } {
  const o = listOptions(clients, opts);
  switch (kind) {
    case 'Deployment':
      return {
        path: '/apis/apps/v1/deployments',
        list: async () => asList(await clients.apps.listDeploymentForAllNamespaces({}, o)),
      };
    case 'StatefulSet':
      return {
        path: '/apis/apps/v1/statefulsets',
        list: async () => asList(await clients.apps.listStatefulSetForAllNamespaces({}, o)),
      };
    case 'DaemonSet':
      return {
        path: '/apis/apps/v1/daemonsets',
        list: async () => asList(await clients.apps.listDaemonSetForAllNamespaces({}, o)),
      };
    case 'ReplicaSet':
      return {
        path: '/apis/apps/v1/replicasets',
        list: async () => asList(await clients.apps.listReplicaSetForAllNamespaces({}, o)),
      };
    case 'Job':
      return {
        path: '/apis/batch/v1/jobs',
        list: async () => asList(await clients.batch.listJobForAllNamespaces({}, o)),
      };
    case 'CronJob':
      return {
        path: '/apis/batch/v1/cronjobs',
        list: async () => asList(await clients.batch.listCronJobForAllNamespaces({}, o)),
      };
    case 'Pod':
      // A Pod's labels are its template's: only module pods matter, so filter on the server.
      return {
        path: '/api/v1/pods',
        labelSelector: LABEL_MODULE,
        list: async () =>
          asList(await clients.core.listPodForAllNamespaces({ labelSelector: LABEL_MODULE }, o)),
      };
  }
}

/** One informer per workload kind, trimmed to metadata + pod template labels/annotations. */
export function workloadInformers(
  clients: KubeClients,
  opts: InformerCommon & { kinds?: readonly WorkloadKind[] } = {},
): Map<WorkloadKind, SupervisedInformer<WorkloadObject>> {
  const out = new Map<WorkloadKind, SupervisedInformer<WorkloadObject>>();
  for (const kind of opts.kinds ?? WORKLOAD_KINDS) {
    const { path, list, labelSelector } = workloadList(kind, clients, opts);
    out.set(
      kind,
      new SupervisedInformer<WorkloadObject>({
        ...common(kind.toLowerCase() + 's', clients, opts),
        path,
        list,
        ...(labelSelector !== undefined ? { labelSelector } : {}),
        trim: (o) => {
          const projected = projectWorkload(kind, o);
          if (projected !== o) reshape(o, projected);
        },
      }),
    );
  }
  return out;
}

/** NetworkPolicies labelled as managed by erpguard. */
export function networkPolicyInformer(
  clients: KubeClients,
  opts: InformerCommon = {},
): SupervisedInformer<NetworkPolicyObject> {
  const labelSelector = `${LABEL_MANAGED_BY}=${MANAGED_BY_VALUE}`;
  return new SupervisedInformer<NetworkPolicyObject>({
    ...common('networkpolicies', clients, opts),
    path: '/apis/networking.k8s.io/v1/networkpolicies',
    labelSelector,
    list: async () =>
      asList(
        await clients.networking.listNetworkPolicyForAllNamespaces(
          { labelSelector },
          listOptions(clients, opts),
        ),
      ),
    trim: (o) =>
      reshape(o, {
        kind: 'NetworkPolicy',
        metadata: projectMeta(o.metadata),
        spec: plain(o.spec),
      }),
  });
}

/** Module and declared integrations of a workload, read the way the admission gate reads them. */
export function workloadModule(w: WorkloadObject): string | undefined {
  return w.template.labels[LABEL_MODULE];
}

export function workloadIntegrationsAnnotation(w: WorkloadObject): string | undefined {
  const own = w.kind === 'Pod' ? undefined : w.metadata.annotations?.[ANNOTATION_INTEGRATIONS];
  const tmpl = w.template.annotations[ANNOTATION_INTEGRATIONS];
  const parts = [tmpl, own].filter((x): x is string => x !== undefined);
  return parts.length === 0 ? undefined : parts.join(',');
}

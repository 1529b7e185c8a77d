/**
 * What the CLI's cluster commands (`kubectl erpguard approve | status | audit`) need from the
 * API server, over the kubeconfig and context kubectl would use. Implements pkg/cli's
 * ClusterApi port.
 */
import { GROUP, PLURAL, VERSION } from '../api/v1alpha1/index.js';
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { kubeError } from './errors.js';
import { createKubeClients, loadKubeConfig, requestOptions } from './client.js';
import type { KubeClients, KubeConfigOptions } from './client.js';
import { projectWorkload, WORKLOAD_KINDS } from './resources.js';
import type { WorkloadKind, WorkloadObject } from './resources.js';

export interface ClusterUser {
  username: string;
  groups: string[];
}

export interface ClusterNamespace {
  name: string;
  labels: Record<string, string>;
}

export class CliCluster {
  private readonly clients: KubeClients;
  readonly defaultNamespace: string;

  constructor(options: KubeConfigOptions & { namespace?: string }) {
    const kc = loadKubeConfig(options);
    this.clients = createKubeClients(kc);
    const contextNamespace = kc.getContextObject(kc.getCurrentContext())?.namespace;
    this.defaultNamespace = options.namespace ?? (contextNamespace || 'default');
  }

  close(): void {
    this.clients.close();
  }

  /** The authenticated user, as the API server (and so the webhook) sees it. */
  async whoAmI(): Promise<ClusterUser> {
    try {
      const review = await this.clients.authentication.createSelfSubjectReview(
        { body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } },
        requestOptions(this.clients),
      );
      const info = review.status?.userInfo;
      return { username: info?.username ?? '', groups: info?.groups ?? [] };
    } catch (error) {
      throw kubeError('SelfSubjectReview', error);
    }
  }

  async getPolicy(namespace: string, name: string): Promise<ErpIntegrationPolicy> {
    try {
      return (await this.clients.custom.getNamespacedCustomObject(
        { group: GROUP, version: VERSION, namespace, plural: PLURAL, name },
        requestOptions(this.clients),
      )) as ErpIntegrationPolicy;
    } catch (error) {
      throw kubeError(`get ErpIntegrationPolicy ${namespace}/${name}`, error);
    }
  }

  /** All policies in a namespace, or in every namespace when `namespace` is undefined. */
  async listPolicies(namespace: string | undefined): Promise<ErpIntegrationPolicy[]> {
    try {
      const list = (
        namespace === undefined
          ? await this.clients.custom.listClusterCustomObject(
              { group: GROUP, version: VERSION, plural: PLURAL },
              requestOptions(this.clients),
            )
          : await this.clients.custom.listNamespacedCustomObject(
              { group: GROUP, version: VERSION, namespace, plural: PLURAL },
              requestOptions(this.clients),
            )
      ) as { items?: ErpIntegrationPolicy[] };
      return list.items ?? [];
    } catch (error) {
      throw kubeError('list ErpIntegrationPolicies', error);
    }
  }

  /**
   * Merge-patches annotations, guarded by resourceVersion: if the policy changed since it was
   * read (e.g. its spec was edited), the API server answers 409 and nothing is written.
   */
  async patchPolicyAnnotations(
    namespace: string,
    name: string,
    resourceVersion: string,
    annotations: Record<string, string>,
  ): Promise<ErpIntegrationPolicy> {
    try {
      return (await this.clients.custom.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          namespace,
          plural: PLURAL,
          name,
          body: { metadata: { resourceVersion, annotations } },
          fieldManager: 'kubectl-erpguard',
        },
        requestOptions(this.clients, 'merge'),
      )) as ErpIntegrationPolicy;
    } catch (error) {
      throw kubeError(`annotate ErpIntegrationPolicy ${namespace}/${name}`, error);
    }
  }

  async listNamespaces(): Promise<ClusterNamespace[]> {
    try {
      const list = await this.clients.core.listNamespace({}, requestOptions(this.clients));
      return list.items.map((ns) => ({
        name: ns.metadata?.name ?? '',
        labels: ns.metadata?.labels ?? {},
      }));
    } catch (error) {
      throw kubeError('list namespaces', error);
    }
  }

  /** Workloads of every kind the gate judges, in one namespace. */
  async listWorkloads(namespace: string): Promise<WorkloadObject[]> {
    const lists: Record<WorkloadKind, () => Promise<{ items: unknown[] }>> = {
      Deployment: () =>
        this.clients.apps.listNamespacedDeployment({ namespace }, requestOptions(this.clients)),
      StatefulSet: () =>
        this.clients.apps.listNamespacedStatefulSet({ namespace }, requestOptions(this.clients)),
      DaemonSet: () =>
        this.clients.apps.listNamespacedDaemonSet({ namespace }, requestOptions(this.clients)),
      ReplicaSet: () =>
        this.clients.apps.listNamespacedReplicaSet({ namespace }, requestOptions(this.clients)),
      Job: () => this.clients.batch.listNamespacedJob({ namespace }, requestOptions(this.clients)),
      CronJob: () =>
        this.clients.batch.listNamespacedCronJob({ namespace }, requestOptions(this.clients)),
      Pod: () => this.clients.core.listNamespacedPod({ namespace }, requestOptions(this.clients)),
    };
    const out: WorkloadObject[] = [];
    for (const kind of WORKLOAD_KINDS) {
      try {
        const list = await lists[kind]();
        out.push(...list.items.map((item) => projectWorkload(kind, item)));
      } catch (error) {
        throw kubeError(`list ${kind}s in ${namespace}`, error);
      }
    }
    return out;
  }
}

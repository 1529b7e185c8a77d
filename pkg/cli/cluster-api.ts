/** The port through which cluster commands reach the API server; pkg/kube implements it. */
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';

export interface ClusterWorkload {
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { kind: string; controller?: boolean }[];
  };
  template: { labels: Record<string, string>; annotations: Record<string, string> };
}

export interface ClusterApi {
  readonly defaultNamespace: string;
  whoAmI(): Promise<{ username: string; groups: string[] }>;
  getPolicy(namespace: string, name: string): Promise<ErpIntegrationPolicy>;
  listPolicies(namespace: string | undefined): Promise<ErpIntegrationPolicy[]>;
  patchPolicyAnnotations(
    namespace: string,
    name: string,
    resourceVersion: string,
    annotations: Record<string, string>,
  ): Promise<ErpIntegrationPolicy>;
  listNamespaces(): Promise<{ name: string; labels: Record<string, string> }[]>;
  listWorkloads(namespace: string): Promise<ClusterWorkload[]>;
  close(): void;
}

export interface ClusterConnection {
  kubeconfigPath?: string;
  context?: string;
  namespace?: string;
}

export type ClusterApiFactory = (connection: ClusterConnection) => ClusterApi;

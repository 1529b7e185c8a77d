/**
 * What the reconcilers need from the outside world. pkg/kube implements these against the API
 * server; unit tests pass plain in-memory objects.
 */
import type { ErpIntegrationPolicy, ErpIntegrationPolicyStatus } from '../api/v1alpha1/index.js';
import type { NetworkPolicyObject, ObjectMetaLite } from '../kube/resources.js';
import type {
  ApplyResult,
  EventInput,
  EventSubject,
  NetworkPolicyManifest,
  PolicyRef,
} from '../kube/writers.js';

export interface PolicyStore {
  get(name: string, namespace?: string): ErpIntegrationPolicy | undefined;
  list(namespace?: string): readonly ErpIntegrationPolicy[];
}

export interface StatusWriter {
  applyStatus(policy: PolicyRef, status: ErpIntegrationPolicyStatus): Promise<ApplyResult>;
}

export interface EventSink {
  record(subject: EventSubject, event: EventInput): Promise<void>;
}

export interface LeaderGate {
  isLeader(): boolean;
}

export interface NetworkPolicyStore {
  list(namespace?: string): readonly NetworkPolicyObject[];
}

export interface NetworkPolicyClient {
  read(namespace: string, name: string): Promise<ObjectMetaLite | null>;
  apply(manifest: NetworkPolicyManifest): Promise<void>;
  delete(namespace: string, name: string, uid?: string): Promise<void>;
}

export interface NamespaceStore {
  list(): readonly { metadata: ObjectMetaLite }[];
}

/** A gate that is always open: a single replica without leader election. */
export const ALWAYS_LEADER: LeaderGate = { isLeader: () => true };

/**
 * What the admission handlers decide on: a snapshot of cluster state (from informers in the
 * cluster, from files in local mode and tests) and the static configuration. Both are plain
 * data; the handlers never read anything else.
 */
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import type { ReviewerConfig } from '../policy/verify.js';

import type { AdmissionDenial, AdmissionSkip } from './codes.js';
import type { AdmissionResponse } from './review.js';
import type { PatchOperation } from './json-patch.js';

export interface ServiceAccountBinding {
  namespace: string;
  name: string;
  /** Value of the ServiceAccount's `erpguard.io/module` label; absent when unlabelled. */
  module?: string;
}

export interface NamespaceInfo {
  name: string;
  labels: Record<string, string>;
}

/**
 * Cluster state. Return the same object until something changes: the handlers index it once
 * per object (lookups are then O(1)), keyed by identity.
 */
export interface Snapshot {
  policies: readonly ErpIntegrationPolicy[];
  serviceAccounts: readonly ServiceAccountBinding[];
  namespaces: readonly NamespaceInfo[];
}

/** Kubernetes quantities as strings (`50m`, `64Mi`). */
export interface ResourceRequirements {
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

export interface SidecarConfig {
  /** Full image reference, ideally pinned by digest. */
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** Default: requests cpu 50m / memory 64Mi, limits memory 128Mi. */
  resources?: ResourceRequirements;
  /** UID and GID the proxy runs as (default 65532, "nonroot"). */
  runAsUser?: number;
  /** Extra NO_PROXY entries for app containers (e.g. the API server's ClusterIP). */
  noProxy?: readonly string[];
  /** Admin-port paths probed by the kubelet (defaults `/healthz` and `/readyz`). */
  livenessPath?: string;
  readinessPath?: string;
  /** Passed to the sidecar as ERPGUARD_LOG_LEVEL when set. */
  logLevel?: string;
}

/** ReviewerConfig from pkg/policy/verify.ts: `{ groups: string[]; users?: string[] }`. */
export type { ReviewerConfig };

export interface AdmissionConfig {
  reviewers: ReviewerConfig;
  /** erpguard's own namespace: never in scope. */
  ownNamespace: string;
  sidecar: SidecarConfig;
  /** SPIFFE trust domain handed to the sidecar. */
  trustDomain: string;
  /** host:port of the controller's gRPC identity and policy service. */
  controllerAddress: string;
  /** The time of the request (verification expiry, approval timestamps). */
  now: Date;
  /** DNS suffix of Services (default `cluster.local`), used for NO_PROXY. */
  clusterDomain?: string;
  /**
   * A request from a namespace the snapshot does not know: `enforce` (default) judges it as
   * enforced. The API server only calls us for namespaces its selector matched, so a miss means
   * our cache lags; failing closed is safe because controllers retry.
   */
  unknownNamespace?: 'enforce' | 'ignore';
}

/** Enforce denies; Audit allows with warnings. From the namespace label `erpguard.io/enforce`. */
export type GateMode = 'Enforce' | 'Audit';

export interface Finding {
  code: AdmissionDenial;
  /** Human sentence, without the code. */
  message: string;
  /** Field path in the object, when one is to blame. */
  field?: string;
}

/** The label of the decision in metrics and logs. */
export type DecisionLabel = 'allowed' | 'denied' | 'warned' | 'patched' | 'skipped' | 'error';

/** What a handler returns: the wire response plus what the adapter needs for metrics and logs. */
export interface AdmissionResult {
  response: AdmissionResponse;
  decision: DecisionLabel;
  /** Set when the request was let through unjudged. */
  skip?: AdmissionSkip;
  findings: Finding[];
  /** Mutating only: the operations encoded in `response.patch`. */
  patch?: PatchOperation[];
  /** Mutating only: the object with the patch applied (offline CLI, tests). */
  patchedObject?: Record<string, unknown>;
}

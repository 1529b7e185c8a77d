/**
 * ErpIntegrationPolicy v1alpha1: the API types. Constants and types only; this folder imports
 * nothing else in the project, and everything may import it.
 */

export const GROUP = 'erpguard.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'ErpIntegrationPolicy';
export const LIST_KIND = 'ErpIntegrationPolicyList';
export const PLURAL = 'erpintegrationpolicies';
export const SHORT_NAME = 'eip';
export const CATEGORY = 'erpguard';

export type PolicyMode = 'Enforce' | 'Audit';
export const POLICY_MODES: readonly PolicyMode[] = ['Enforce', 'Audit'];

/** HTTP methods a rule may name. Upper-case tokens only (RFC 9110 methods are case-sensitive). */
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];
/** `*` in `methods` means every method in HTTP_METHODS; the lint flags it. */
export const ANY_METHOD = '*';

export interface ModuleRef {
  /** Module name, a DNS-1123 label (`finance`, `crm`). */
  module: string;
  /** Namespace of the module's workloads; defaults to the policy's namespace. Source only. */
  namespace?: string;
}

export interface GrpcRule {
  /** Fully qualified service, e.g. `erp.finance.v1.Invoices`. */
  service: string;
  /** Method names of that service; `*` means all of them. */
  methods: string[];
}

/** One rule is either an HTTP rule (methods + paths) or a gRPC rule (grpc), never both. */
export interface PolicyRule {
  methods?: string[];
  /** Absolute path templates: literal segments, `{name}` for exactly one segment, a final `/**` for any suffix. */
  paths?: string[];
  grpc?: GrpcRule;
}

export interface RateLimit {
  requestsPerSecond: number;
  /** Bucket size; defaults to requestsPerSecond. */
  burst?: number;
}

export interface DataProtection {
  /** JSONPath-like selectors (`$.items[*].iban`) whose values are replaced by a fixed marker. */
  mask?: string[];
  /** Selectors whose values are replaced by a stable keyed token (HMAC-SHA256). */
  tokenize?: string[];
}

export interface ErpIntegrationPolicySpec {
  source: ModuleRef;
  destination: ModuleRef;
  /** Enforce (default) blocks what is not allowed; Audit decides and logs, never blocks. */
  mode?: PolicyMode;
  rules: PolicyRule[];
  rateLimit?: RateLimit;
  dataProtection?: DataProtection;
  /** Go-style duration (`30m`, `1h`); default 1h. */
  certificateTTL?: string;
  /** RFC 3339 time after which the approval must be renewed. */
  validUntil?: string;
  description?: string;
}

/**
 * An approval, bound to one spec hash. In a cluster it is written as the JSON value of the
 * `erpguard.io/approval` annotation, which the webhook accepts only from reviewers; in local mode it
 * is read from the policy file.
 */
export interface Approval {
  by: string;
  /** Groups of the approver at approval time, as the API server authenticated them. */
  groups?: string[];
  /** RFC 3339. */
  at: string;
  /** `sha256:<hex>` of the canonical spec that was approved. */
  specHash: string;
}

export type ConditionStatus = 'True' | 'False' | 'Unknown';

export interface Condition {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime: string;
}

export interface DependentWorkload {
  kind: string;
  name: string;
  namespace: string;
}

export interface ErpIntegrationPolicyStatus {
  observedGeneration?: number;
  specHash?: string;
  approval?: Approval;
  conditions?: Condition[];
  dependents?: DependentWorkload[];
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  generation?: number;
  resourceVersion?: string;
  uid?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface ErpIntegrationPolicy {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: ErpIntegrationPolicySpec;
  status?: ErpIntegrationPolicyStatus;
}

/** Labels and annotations (DESIGN.md §2). */
export const LABEL_ENFORCE = 'erpguard.io/enforce';
export const LABEL_MODULE = 'erpguard.io/module';
export const ANNOTATION_INTEGRATIONS = 'erpguard.io/integrations';
export const ANNOTATION_APPROVAL = 'erpguard.io/approval';
export const ANNOTATION_LAST_AUTHOR = 'erpguard.io/last-author';
export const ANNOTATION_INJECTED = 'erpguard.io/injected';

/** Ports and names in the pod (DESIGN.md §2). */
export const INBOUND_PORT = 15443;
export const OUTBOUND_PORT = 15001;
export const ADMIN_PORT = 15020;
export const SIDECAR_CONTAINER_NAME = 'erpguard-proxy';
export const TOKEN_AUDIENCE = 'erpguard';
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

/** Trusted headers the inbound sidecar sets for the app; any caller-sent `x-erpguard-*` is removed. */
export const HEADER_CALLER = 'x-erpguard-caller';
export const HEADER_CALLER_MODULE = 'x-erpguard-caller-module';
export const HEADER_POLICY = 'x-erpguard-policy';

/** Defaults applied before hashing and enforcement. */
export const DEFAULT_MODE: PolicyMode = 'Enforce';
export const DEFAULT_CERTIFICATE_TTL = '1h';

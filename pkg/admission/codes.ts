/**
 * Stable reason codes of admission decisions (CamelCase words, documented in docs/admission.md
 * and docs/reference/codes.md). They appear in denial messages, warnings, audit annotations and
 * logs, so tooling can match on them.
 */

/** Why a request was denied (or, in Audit mode, warned about). */
export const AdmissionDenial = {
  // --- the workload gate
  /** The pod template has no `erpguard.io/module` label. */
  ModuleLabelMissing: 'ModuleLabelMissing',
  /** The module label is not a DNS-1123 label. */
  ModuleLabelInvalid: 'ModuleLabelInvalid',
  /** The workload's own module label differs from its pod template's. */
  ModuleLabelMismatch: 'ModuleLabelMismatch',
  /** The pod's ServiceAccount is not in the cache (not created yet, or a typo). */
  ServiceAccountUnknown: 'ServiceAccountUnknown',
  /** The ServiceAccount carries no `erpguard.io/module` label. */
  ServiceAccountNotBound: 'ServiceAccountNotBound',
  /** The ServiceAccount is bound to another module. */
  ServiceAccountModuleMismatch: 'ServiceAccountModuleMismatch',
  /** `erpguard.io/integrations` holds something that is not a module name. */
  IntegrationsInvalid: 'IntegrationsInvalid',
  /** A declared integration has no Verified policy (the message says why, per integration). */
  IntegrationNotVerified: 'IntegrationNotVerified',
  // --- what would bypass the sidecar
  /** `hostNetwork: true` (NetworkPolicies and the sidecar cannot see host-network traffic). */
  HostNetwork: 'HostNetwork',
  /** An injection opt-out annotation or label in an enforced namespace. */
  OptOutRefused: 'OptOutRefused',
  /** A module pod reached validation without the erpguard-proxy native sidecar. */
  SidecarMissing: 'SidecarMissing',
  /** The erpguard-proxy container differs from what the injector produces. */
  SidecarAltered: 'SidecarAltered',
  /** An UPDATE removes or changes the injected container. */
  SidecarTampered: 'SidecarTampered',
  /** New ephemeral containers (kubectl debug) in an enforced namespace. */
  EphemeralContainerRefused: 'EphemeralContainerRefused',
  /** The object does not have the shape its kind requires (the message names the field). */
  InvalidObject: 'InvalidObject',
  // --- ErpIntegrationPolicy objects
  /** The policy fails semantic validation (the message lists field paths). */
  PolicyInvalid: 'PolicyInvalid',
  /** The `erpguard.io/approval` annotation is not the expected JSON. */
  ApprovalMalformed: 'ApprovalMalformed',
  /** The approval changes in the same request as the spec. */
  ApprovalWithSpecChange: 'ApprovalWithSpecChange',
  /** `approval.by` is not the user making the request. */
  ApprovalNotByRequester: 'ApprovalNotByRequester',
  /** The requester is in no reviewer group and not a listed reviewer. */
  ApproverNotReviewer: 'ApproverNotReviewer',
  /** The requester is the spec's last author. */
  SelfApproval: 'SelfApproval',
  /** `approval.specHash` is not the hash of the current spec. */
  ApprovalHashMismatch: 'ApprovalHashMismatch',
  /** `approval.groups` names groups the requester is not in. */
  ApprovalGroupsMismatch: 'ApprovalGroupsMismatch',
  /** No `erpguard.io/last-author` is recorded, so self-approval cannot be ruled out. */
  LastAuthorUnknown: 'LastAuthorUnknown',
  /** `erpguard.io/last-author` does not name the spec's real last author. */
  LastAuthorTampered: 'LastAuthorTampered',
  // --- the server
  /** The webhook's cache has not synced yet; retry. */
  CacheNotReady: 'CacheNotReady',
  /** A bug in the handler; the request is denied (fail closed). */
  InternalError: 'InternalError',
} as const;
export type AdmissionDenial = (typeof AdmissionDenial)[keyof typeof AdmissionDenial];

/** Why a request was let through without being judged (logged and put in audit annotations). */
export const AdmissionSkip = {
  /** kube-system, kube-public, kube-node-lease or erpguard's own namespace. */
  NamespaceExempt: 'NamespaceExempt',
  /** The namespace is not labelled `erpguard.io/enforce: "true"` or `"audit"`. */
  NamespaceNotEnforced: 'NamespaceNotEnforced',
  /** DELETE or CONNECT. */
  OperationIgnored: 'OperationIgnored',
  /** status, scale and other subresources we do not judge. */
  SubresourceIgnored: 'SubresourceIgnored',
  /** A kind the webhook does not judge. */
  KindIgnored: 'KindIgnored',
  /** UPDATE that only removes finalizers. */
  FinalizerRemoval: 'FinalizerRemoval',
  /** UPDATE of an object being deleted that changes only metadata. */
  DeletingMetadataOnly: 'DeletingMetadataOnly',
  /** UPDATE that leaves the gated fields (pod template, module, integrations) unchanged. */
  GateInputsUnchanged: 'GateInputsUnchanged',
  /** A Pod without a module label in a namespace that is not enforced: nothing to inject. */
  NotAModulePod: 'NotAModulePod',
} as const;
export type AdmissionSkip = (typeof AdmissionSkip)[keyof typeof AdmissionSkip];

/** Per-integration reasons in IntegrationNotVerified messages, beyond the VerifiedReason values. */
export const IntegrationGap = {
  /** No ErpIntegrationPolicy with this source, destination and namespace exists. */
  NoPolicy: 'NoPolicy',
} as const;

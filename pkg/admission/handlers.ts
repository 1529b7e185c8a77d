/**
 * The two admission handlers: pure functions from (review, snapshot, config) to a response.
 *
 * Order of the checks, in both: first what must never be blocked (DELETE and CONNECT, status and
 * scale subresources, null objects, finalizer-only removals, metadata-only edits of objects being
 * deleted), then our own CRD (judged in every namespace: the approval guard must not have a
 * hole), then the namespace scope (system namespaces and our own are never judged), then the
 * workload rules. dryRun requests go through the same checks; nothing here has side effects.
 */
import { API_VERSION, GROUP, KIND as POLICY_KIND } from '../api/v1alpha1/index.js';
import { ErrorCode, isErpguardError } from '../errors/errors.js';

import { AdmissionDenial, AdmissionSkip } from './codes.js';
import {
  alteredFinding,
  gateInputs,
  gateInputsUnchanged,
  judgeWorkload,
  sidecarOf,
} from './gate.js';
import { planInjection, podModule, sidecarDifferences } from './injection.js';
import { encodePatch } from './json-patch.js';
import type { PatchOperation } from './json-patch.js';
import {
  containersOf,
  displayName,
  fieldPath,
  isDeletingMetadataOnly,
  isFinalizerRemovalOnly,
  isMap,
  jsonEqual,
  podTemplate,
  workloadKind,
} from './objects.js';
import type { JsonMap } from './objects.js';
import { judgePolicy, mutatePolicy } from './policy-admission.js';
import type { AdmissionRequest, AdmissionResponse, AdmissionReview } from './review.js';
import { indexSnapshot, namespaceScope } from './snapshot-index.js';
import type { AdmissionConfig, AdmissionResult, Finding, GateMode, Snapshot } from './types.js';

/** Kubernetes shows at most a few KiB of warnings; keep each short and their number bounded. */
const MAX_WARNING_LENGTH = 256;
const MAX_WARNINGS = 12;
const SIDECAR_SUBRESOURCE = 'ephemeralcontainers';

function isPolicy(req: AdmissionRequest): boolean {
  return req.kind.group === GROUP && req.kind.kind === POLICY_KIND;
}

function skipped(req: AdmissionRequest, skip: AdmissionSkip): AdmissionResult {
  return {
    response: {
      uid: req.uid,
      allowed: true,
      auditAnnotations: { decision: 'skipped', reason: skip },
    },
    decision: 'skipped',
    skip,
    findings: [],
  };
}

/** The never-block rules shared by both webhooks. */
function neverBlock(req: AdmissionRequest, allowedSubresource?: string): AdmissionSkip | undefined {
  if (req.operation === 'DELETE' || req.operation === 'CONNECT')
    return AdmissionSkip.OperationIgnored;
  if (req.subResource !== undefined && req.subResource !== allowedSubresource)
    return AdmissionSkip.SubresourceIgnored;
  if (!isMap(req.object)) return AdmissionSkip.OperationIgnored;
  if (isFinalizerRemovalOnly(req)) return AdmissionSkip.FinalizerRemoval;
  if (isDeletingMetadataOnly(req)) return AdmissionSkip.DeletingMetadataOnly;
  return undefined;
}

function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

function formatFinding(f: Finding): string {
  return `${f.code}: ${f.message}`;
}

function statusFor(findings: readonly Finding[]): { code: number; reason: string } {
  const invalid = findings.every(
    (f) =>
      f.code === AdmissionDenial.PolicyInvalid ||
      f.code === AdmissionDenial.ApprovalMalformed ||
      f.code === AdmissionDenial.InvalidObject,
  );
  return invalid ? { code: 422, reason: 'Invalid' } : { code: 403, reason: 'Forbidden' };
}

/** Turns findings into the response: denial in Enforce mode, warnings in Audit mode. */
function decide(
  req: AdmissionRequest,
  findings: Finding[],
  mode: GateMode,
  what: string,
  extraWarnings: readonly string[] = [],
): AdmissionResult {
  const codes = [...new Set(findings.map((f) => f.code))].join(',');
  const warnings = [...extraWarnings];
  if (findings.length === 0) {
    const response: AdmissionResponse = {
      uid: req.uid,
      allowed: true,
      auditAnnotations: { decision: 'allowed' },
    };
    if (warnings.length > 0) response.warnings = boundWarnings(warnings);
    return { response, decision: 'allowed', findings };
  }
  if (mode === 'Audit') {
    for (const f of findings) warnings.push(`erpguard audit (would deny): ${formatFinding(f)}`);
    return {
      response: {
        uid: req.uid,
        allowed: true,
        warnings: boundWarnings(warnings),
        auditAnnotations: { decision: 'warned', reasons: codes },
      },
      decision: 'warned',
      findings,
    };
  }
  const { code, reason } = statusFor(findings);
  const message =
    `erpguard: ${what} is not admitted:\n` +
    findings.map((f) => `- ${formatFinding(f)}`).join('\n');
  const response: AdmissionResponse = {
    uid: req.uid,
    allowed: false,
    status: { code, reason, message },
    auditAnnotations: { decision: 'denied', reasons: codes },
  };
  if (warnings.length > 0) response.warnings = boundWarnings(warnings);
  return { response, decision: 'denied', findings };
}

function boundWarnings(all: readonly string[]): string[] {
  const out = all.slice(0, MAX_WARNINGS).map((w) => truncate(w, MAX_WARNING_LENGTH));
  if (all.length > MAX_WARNINGS) out.push(`… and ${all.length - MAX_WARNINGS} more`);
  return out;
}

function internalError(req: AdmissionRequest, error: unknown): AdmissionResult {
  const detail = error instanceof Error ? error.message : String(error);
  // An unexpected object shape is the user's to fix: say what; a bug fails closed as 500.
  const shape = isErpguardError(error) && error.code === ErrorCode.InvalidDocument;
  const code = shape ? AdmissionDenial.InvalidObject : AdmissionDenial.InternalError;
  return {
    response: {
      uid: req.uid,
      allowed: false,
      status: {
        code: shape ? 422 : 500,
        reason: shape ? 'Invalid' : 'InternalError',
        message: `erpguard: ${code}: ${detail}`,
      },
      auditAnnotations: { decision: shape ? 'denied' : 'error', reasons: code },
    },
    decision: shape ? 'denied' : 'error',
    findings: [{ code, message: detail }],
  };
}

/** The validating webhook. Never returns a patch. */
export function validateReview(
  review: AdmissionReview,
  snapshot: Snapshot,
  config: AdmissionConfig,
): AdmissionResult {
  const req = review.request;
  try {
    const result = validateRequest(req, snapshot, config);
    delete result.response.patch;
    delete result.response.patchType;
    return result;
  } catch (e) {
    return internalError(req, e);
  }
}

function validateRequest(
  req: AdmissionRequest,
  snapshot: Snapshot,
  config: AdmissionConfig,
): AdmissionResult {
  const kind = workloadKind(req);
  const skip = neverBlock(req, kind === 'Pod' ? SIDECAR_SUBRESOURCE : undefined);
  if (skip !== undefined) return skipped(req, skip);
  const obj = req.object as JsonMap;

  if (isPolicy(req)) {
    const { findings, warnings } = judgePolicy(req, config);
    return decide(
      req,
      findings,
      'Enforce',
      `${API_VERSION} ${POLICY_KIND} ${displayName(req, obj)}`,
      warnings,
    );
  }
  if (kind === undefined) return skipped(req, AdmissionSkip.KindIgnored);

  const index = indexSnapshot(snapshot);
  const namespace = req.namespace ?? '';
  const scope = namespaceScope(namespace, index, config);
  if (!scope.inScope) return skipped(req, scope.skip);
  const what = `${kind} ${displayName(req, obj)}`;

  if (req.subResource === SIDECAR_SUBRESOURCE) {
    return decide(req, judgeEphemeral(req, obj), scope.mode, what);
  }

  if (req.operation === 'UPDATE' && isMap(req.oldObject)) {
    const nt = podTemplate(kind, obj);
    const ot = podTemplate(kind, req.oldObject);
    const tamper = kind === 'Pod' ? judgeSidecarUpdate(req.oldObject, obj) : [];
    if (
      nt.ok &&
      ot.ok &&
      gateInputsUnchanged(
        gateInputs(kind, req.oldObject, ot.template),
        gateInputs(kind, obj, nt.template),
      )
    ) {
      return tamper.length > 0
        ? decide(req, tamper, scope.mode, what)
        : skipped(req, AdmissionSkip.GateInputsUnchanged);
    }
    const findings = judgeWorkload({ req, kind, obj, namespace, index, config });
    return decide(req, [...findings, ...tamper], scope.mode, what);
  }

  const findings = judgeWorkload({ req, kind, obj, namespace, index, config });
  if (kind === 'Pod' && req.operation === 'CREATE') findings.push(...judgeInjectedPod(obj, config));
  return decide(req, findings, scope.mode, what);
}

/** A new module Pod must carry exactly the sidecar we inject (validation runs after mutation). */
function judgeInjectedPod(pod: JsonMap, config: AdmissionConfig): Finding[] {
  const module = podModule(pod);
  const spec = pod['spec'];
  if (module === undefined || !isMap(spec)) return []; // the gate already reported it
  if (sidecarOf(spec) === undefined) {
    return [
      {
        code: AdmissionDenial.SidecarMissing,
        field: 'spec.initContainers',
        message:
          'the erpguard-proxy sidecar was not injected; check that the erpguard mutating webhook covers this namespace',
      },
    ];
  }
  const diffs = sidecarDifferences(spec, module, config);
  return diffs.length > 0 ? [alteredFinding('', diffs)] : [];
}

/** UPDATE must keep an injected sidecar exactly as it was. */
function judgeSidecarUpdate(oldPod: JsonMap, pod: JsonMap): Finding[] {
  const before = sidecarOf(oldPod['spec']);
  if (before === undefined) return [];
  const after = sidecarOf(pod['spec']);
  if (after === undefined) {
    return [
      {
        code: AdmissionDenial.SidecarTampered,
        field: 'spec.initContainers',
        message: 'the update removes the erpguard-proxy container',
      },
    ];
  }
  const oldInit = (oldPod['spec'] as JsonMap)['initContainers'] as unknown[];
  const newInit = (pod['spec'] as JsonMap)['initContainers'] as unknown[];
  if (!jsonEqual(after, before) || oldInit.indexOf(before) !== newInit.indexOf(after)) {
    return [
      {
        code: AdmissionDenial.SidecarTampered,
        field: 'spec.initContainers',
        message: 'the update changes the erpguard-proxy container',
      },
    ];
  }
  return [];
}

/** `kubectl debug` adds ephemeral containers, which run without the proxy's environment. */
function judgeEphemeral(req: AdmissionRequest, pod: JsonMap): Finding[] {
  const spec = pod['spec'];
  if (!isMap(spec))
    return [{ code: AdmissionDenial.InvalidObject, field: 'spec', message: 'spec is missing' }];
  const oldSpec = isMap(req.oldObject) && isMap(req.oldObject['spec']) ? req.oldObject['spec'] : {};
  const before = new Set(containersOf(oldSpec, ['ephemeralContainers']).map((r) => r.name));
  const added = containersOf(spec, ['ephemeralContainers']).filter((r) => !before.has(r.name));
  return added.map((r) => ({
    code: AdmissionDenial.EphemeralContainerRefused,
    field: fieldPath('spec', 'ephemeralContainers', r.index),
    message: `ephemeral container ${JSON.stringify(r.name)} would bypass the erpguard proxy; debug in a namespace without erpguard.io/enforce, or use the module's own tooling`,
  }));
}

/** The mutating webhook: injects the sidecar into module Pods and records policy authors. */
export function mutateReview(
  review: AdmissionReview,
  snapshot: Snapshot,
  config: AdmissionConfig,
): AdmissionResult {
  const req = review.request;
  try {
    return mutateRequest(req, snapshot, config);
  } catch (e) {
    return internalError(req, e);
  }
}

function patched(
  req: AdmissionRequest,
  ops: readonly PatchOperation[],
  doc: JsonMap,
): AdmissionResult {
  if (ops.length === 0) {
    return {
      response: { uid: req.uid, allowed: true },
      decision: 'allowed',
      findings: [],
      patchedObject: doc,
    };
  }
  return {
    response: { uid: req.uid, allowed: true, patchType: 'JSONPatch', patch: encodePatch(ops) },
    decision: 'patched',
    findings: [],
    patch: [...ops],
    patchedObject: doc,
  };
}

function mutateRequest(
  req: AdmissionRequest,
  snapshot: Snapshot,
  config: AdmissionConfig,
): AdmissionResult {
  if (req.operation !== 'CREATE' && req.operation !== 'UPDATE')
    return skipped(req, AdmissionSkip.OperationIgnored);
  const skip = neverBlock(req);
  if (skip !== undefined) return skipped(req, skip);
  const obj = req.object as JsonMap;

  if (isPolicy(req)) {
    const b = mutatePolicy(req, config);
    return patched(req, b.operations, b.document);
  }
  // Only Pods are injected, and only at CREATE: a Pod's init containers are immutable.
  if (workloadKind(req) !== 'Pod' || req.operation !== 'CREATE')
    return skipped(req, AdmissionSkip.KindIgnored);
  const scope = namespaceScope(req.namespace, indexSnapshot(snapshot), config);
  if (!scope.inScope) return skipped(req, scope.skip);
  const module = podModule(obj);
  if (module === undefined) return skipped(req, AdmissionSkip.NotAModulePod);
  const plan = planInjection(obj, module, config);
  return patched(req, plan.builder.operations, plan.builder.document);
}

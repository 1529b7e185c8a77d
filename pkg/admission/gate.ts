/**
 * The deployment gate: a workload in an enforced namespace is admitted only if it names a module,
 * runs as that module's ServiceAccount, declares only integrations covered by Verified policies,
 * and does nothing that would route traffic around the sidecar.
 *
 * Which labels and annotations count: the pod template's. Pods are what run, what the injector
 * sees and what NetworkPolicies select, so `erpguard.io/module` must be on the template; a
 * module label on the workload itself must agree with it. `erpguard.io/integrations` is read
 * from both the template and the workload and the union is gated, so declaring an integration
 * on the Deployment is never silently ignored.
 */
import {
  ANNOTATION_INTEGRATIONS,
  LABEL_MODULE,
  SIDECAR_CONTAINER_NAME,
  VerifiedReason,
} from '../api/v1alpha1/index.js';
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';

import { AdmissionDenial, IntegrationGap } from './codes.js';
import { ANNOTATION_INJECT, sidecarDifferences } from './injection.js';
import {
  containersOf,
  dig,
  fieldPath,
  isDns1123Label,
  isMap,
  jsonEqual,
  podTemplate,
  stringMap,
} from './objects.js';
import type { JsonMap, PodTemplate, WorkloadKind } from './objects.js';
import type { AdmissionRequest } from './review.js';
import { verifyCached } from './snapshot-index.js';
import type { SnapshotIndex } from './snapshot-index.js';
import type { AdmissionConfig, Finding } from './types.js';

const REASON_TEXT: Record<string, string> = {
  [IntegrationGap.NoPolicy]: 'no policy',
  [VerifiedReason.NotApproved]: 'not approved',
  [VerifiedReason.ApprovalVoided]: 'approval void because the spec changed after approval',
  [VerifiedReason.Expired]: 'expired (validUntil has passed)',
  [VerifiedReason.LintFailed]: 'lint errors',
  [VerifiedReason.SelfApproval]: 'self-approval (the approver is the last author)',
  [VerifiedReason.ApproverNotReviewer]: 'the approver is not a reviewer',
  [VerifiedReason.InvalidSpec]: 'invalid spec',
};

/** Parses `erpguard.io/integrations`: comma-separated module names, blanks ignored, deduplicated. */
export function parseIntegrations(value: string | undefined): {
  modules: string[];
  invalid: string[];
} {
  const modules: string[] = [];
  const invalid: string[] = [];
  if (value === undefined) return { modules, invalid };
  for (const raw of value.split(',')) {
    const m = raw.trim();
    if (m === '') continue;
    if (!isDns1123Label(m)) invalid.push(m);
    else if (!modules.includes(m)) modules.push(m);
  }
  return { modules, invalid };
}

export interface GateInputs {
  template: PodTemplate;
  module: string | undefined;
  workloadModule: string | undefined;
  serviceAccount: string;
  integrations: string | undefined;
  workloadIntegrations: string | undefined;
}

export function gateInputs(kind: WorkloadKind, obj: JsonMap, template: PodTemplate): GateInputs {
  const labels = stringMap(template.metadata, 'labels');
  const annotations = stringMap(template.metadata, 'annotations');
  const own = kind === 'Pod' ? undefined : obj;
  const sa = template.spec['serviceAccountName'] ?? template.spec['serviceAccount'];
  return {
    template,
    module: labels[LABEL_MODULE],
    workloadModule:
      own === undefined ? undefined : stringMap(own, 'metadata', 'labels')[LABEL_MODULE],
    serviceAccount: typeof sa === 'string' && sa !== '' ? sa : 'default',
    integrations: annotations[ANNOTATION_INTEGRATIONS],
    workloadIntegrations:
      own === undefined
        ? undefined
        : stringMap(own, 'metadata', 'annotations')[ANNOTATION_INTEGRATIONS],
  };
}

/** UPDATE leaves everything the gate looks at as it was (scaling, relabelling unrelated keys). */
export function gateInputsUnchanged(a: GateInputs, b: GateInputs): boolean {
  return (
    a.module === b.module &&
    a.workloadModule === b.workloadModule &&
    a.serviceAccount === b.serviceAccount &&
    a.integrations === b.integrations &&
    a.workloadIntegrations === b.workloadIntegrations &&
    jsonEqual(a.template.spec, b.template.spec) &&
    jsonEqual(optOuts(a.template), optOuts(b.template))
  );
}

function optOuts(t: PodTemplate): [string | undefined, string | undefined] {
  return [
    stringMap(t.metadata, 'annotations')[ANNOTATION_INJECT],
    stringMap(t.metadata, 'labels')[ANNOTATION_INJECT],
  ];
}

export interface GateContext {
  req: AdmissionRequest;
  kind: WorkloadKind;
  obj: JsonMap;
  namespace: string;
  index: SnapshotIndex;
  config: AdmissionConfig;
}

/** Everything wrong with a workload, as findings (empty = admitted). */
export function judgeWorkload(ctx: GateContext): Finding[] {
  const t = podTemplate(ctx.kind, ctx.obj);
  if (!t.ok)
    return [
      { code: AdmissionDenial.InvalidObject, field: t.field, message: `${t.field} ${t.message}` },
    ];
  const inputs = gateInputs(ctx.kind, ctx.obj, t.template);
  const findings: Finding[] = [];
  const tpl = t.template.path;
  const labelsPath = fieldPath(tpl, 'metadata', 'labels', LABEL_MODULE);

  // Module label and its ServiceAccount binding.
  const module = inputs.module;
  if (module === undefined || module === '') {
    findings.push({
      code: AdmissionDenial.ModuleLabelMissing,
      field: labelsPath,
      message:
        inputs.workloadModule !== undefined
          ? `label ${LABEL_MODULE} is on the ${ctx.kind} but not on its pod template (${labelsPath})`
          : `label ${LABEL_MODULE} is required on ${labelsPath === '' ? 'the pod' : labelsPath}`,
    });
  } else if (!isDns1123Label(module)) {
    findings.push({
      code: AdmissionDenial.ModuleLabelInvalid,
      field: labelsPath,
      message: `module ${JSON.stringify(module)} is not a DNS-1123 label`,
    });
  } else {
    if (inputs.workloadModule !== undefined && inputs.workloadModule !== module) {
      findings.push({
        code: AdmissionDenial.ModuleLabelMismatch,
        field: fieldPath('metadata', 'labels', LABEL_MODULE),
        message: `the ${ctx.kind} says module ${inputs.workloadModule} but its pod template says ${module}`,
      });
    }
    findings.push(...judgeServiceAccount(ctx, inputs, module));
  }

  // Declared integrations.
  const declared = parseIntegrations(
    [inputs.integrations, inputs.workloadIntegrations].filter((x) => x !== undefined).join(','),
  );
  if (declared.invalid.length > 0) {
    findings.push({
      code: AdmissionDenial.IntegrationsInvalid,
      field: fieldPath(tpl, 'metadata', 'annotations', ANNOTATION_INTEGRATIONS),
      message: `${ANNOTATION_INTEGRATIONS} lists names that are not modules: ${declared.invalid.map((s) => JSON.stringify(s)).join(', ')}`,
    });
  }
  if (module !== undefined && isDns1123Label(module)) {
    for (const dst of declared.modules) {
      const gap = integrationGap(ctx, module, dst);
      if (gap !== undefined) findings.push(gap);
    }
  }

  findings.push(...judgeBypass(ctx, t.template));
  return findings;
}

function judgeServiceAccount(ctx: GateContext, inputs: GateInputs, module: string): Finding[] {
  const saField = fieldPath(inputs.template.path, 'spec', 'serviceAccountName');
  const sa = ctx.index.serviceAccount(ctx.namespace, inputs.serviceAccount);
  const name = `${ctx.namespace}/${inputs.serviceAccount}`;
  if (sa === undefined) {
    return [
      {
        code: AdmissionDenial.ServiceAccountUnknown,
        field: saField,
        message: `ServiceAccount ${name} does not exist (or is not cached yet); create it with label ${LABEL_MODULE}: ${module}`,
      },
    ];
  }
  if (sa.module === undefined || sa.module === '') {
    return [
      {
        code: AdmissionDenial.ServiceAccountNotBound,
        field: saField,
        message: `ServiceAccount ${name} is bound to no module; label it ${LABEL_MODULE}: ${module}`,
      },
    ];
  }
  if (sa.module !== module) {
    return [
      {
        code: AdmissionDenial.ServiceAccountModuleMismatch,
        field: saField,
        message: `ServiceAccount ${name} belongs to module ${sa.module}, not ${module}: a pod cannot claim another module's identity`,
      },
    ];
  }
  return [];
}

function policyName(p: ErpIntegrationPolicy): string {
  return `${p.metadata?.namespace ?? ''}/${p.metadata?.name ?? ''}`;
}

/** undefined when some Verified policy covers module → dst; otherwise why not, per policy. */
function integrationGap(ctx: GateContext, module: string, dst: string): Finding | undefined {
  // Policies kept in erpguard's own namespace do not count either (out of scope, like system ones).
  const candidates = ctx.index
    .policies(ctx.namespace, module, dst)
    .filter((p) => p.metadata?.namespace !== ctx.config.ownNamespace);
  if (candidates.length === 0) {
    return {
      code: AdmissionDenial.IntegrationNotVerified,
      field: fieldPath('metadata', 'annotations', ANNOTATION_INTEGRATIONS),
      message: `${dst}: ${IntegrationGap.NoPolicy} (no ErpIntegrationPolicy with source ${module} in ${ctx.namespace} and destination ${dst})`,
    };
  }
  const reasons: string[] = [];
  for (const p of candidates) {
    const v = verifyCached(p, ctx.config.reviewers, ctx.config.now);
    if (v.verified) return undefined;
    const reason = v.condition.reason;
    const text = REASON_TEXT[reason] ?? reason;
    const detail = v.condition.message !== '' ? `: ${v.condition.message}` : '';
    reasons.push(`policy ${policyName(p)} ${reason} (${text})${detail}`);
  }
  return {
    code: AdmissionDenial.IntegrationNotVerified,
    field: fieldPath('metadata', 'annotations', ANNOTATION_INTEGRATIONS),
    message: `${dst}: not verified; ${reasons.join('; ')}`,
  };
}

/** What would route traffic around the sidecar. */
function judgeBypass(ctx: GateContext, t: PodTemplate): Finding[] {
  const findings: Finding[] = [];
  if (t.spec['hostNetwork'] === true) {
    findings.push({
      code: AdmissionDenial.HostNetwork,
      field: fieldPath(t.path, 'spec', 'hostNetwork'),
      message: 'hostNetwork: true bypasses the erpguard proxy and NetworkPolicies',
    });
  }
  const sources: [string, Record<string, string>][] = [
    [
      fieldPath(t.path, 'metadata', 'annotations', ANNOTATION_INJECT),
      stringMap(t.metadata, 'annotations'),
    ],
    [fieldPath(t.path, 'metadata', 'labels', ANNOTATION_INJECT), stringMap(t.metadata, 'labels')],
  ];
  if (ctx.kind !== 'Pod') {
    sources.push(
      [
        fieldPath('metadata', 'annotations', ANNOTATION_INJECT),
        stringMap(ctx.obj, 'metadata', 'annotations'),
      ],
      [
        fieldPath('metadata', 'labels', ANNOTATION_INJECT),
        stringMap(ctx.obj, 'metadata', 'labels'),
      ],
    );
  }
  for (const [field, map] of sources) {
    const v = map[ANNOTATION_INJECT];
    if (v !== undefined && v !== 'true') {
      findings.push({
        code: AdmissionDenial.OptOutRefused,
        field,
        message: `${ANNOTATION_INJECT}: ${JSON.stringify(v)} opts out of the sidecar, which enforced namespaces do not allow`,
      });
    }
  }
  // A regular container squatting on the sidecar's name would make the injector skip the pod.
  for (const ref of containersOf(t.spec, ['containers', 'ephemeralContainers'])) {
    if (ref.name === SIDECAR_CONTAINER_NAME) {
      findings.push({
        code: AdmissionDenial.SidecarAltered,
        field: fieldPath(t.path, 'spec', ref.list, ref.index, 'name'),
        message: `${SIDECAR_CONTAINER_NAME} is reserved for the injected init container`,
      });
    }
  }
  if (ctx.kind !== 'Pod') {
    // Templates are not injected (Pods are); a pre-filled sidecar in a template would be kept
    // as is by the injector, so it must be exactly ours.
    const inTemplate = containersOf(t.spec, ['initContainers']).some(
      (r) => r.name === SIDECAR_CONTAINER_NAME,
    );
    const module = stringMap(t.metadata, 'labels')[LABEL_MODULE];
    if (inTemplate && module !== undefined) {
      const diffs = sidecarDifferences(t.spec, module, ctx.config);
      if (diffs.length > 0) findings.push(alteredFinding(t.path, diffs));
    }
  }
  return findings;
}

export function alteredFinding(path: string, diffs: readonly string[]): Finding {
  return {
    code: AdmissionDenial.SidecarAltered,
    field: fieldPath(path, 'spec', 'initContainers'),
    message: `the ${SIDECAR_CONTAINER_NAME} container differs from the injected one in: ${diffs.join(', ')}`,
  };
}

/** The erpguard-proxy container of a pod spec, if any. */
export function sidecarOf(spec: unknown): JsonMap | undefined {
  const init = dig(spec, 'initContainers');
  if (!Array.isArray(init)) return undefined;
  const c: unknown = init.find((x: unknown) => isMap(x) && x['name'] === SIDECAR_CONTAINER_NAME);
  return isMap(c) ? c : undefined;
}

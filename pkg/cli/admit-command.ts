/**
 * `erpguard admit`: judges saved AdmissionReviews, or plain manifests wrapped into CREATE
 * reviews, with the webhook's own handlers (like `kyverno test`). Nothing touches a cluster.
 */
import { randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { loadAll } from 'js-yaml';
import { admitOffline } from '../admission/offline.js';
import type {
  AdmissionConfig,
  NamespaceInfo,
  ServiceAccountBinding,
  Snapshot,
} from '../admission/types.js';
import { LABEL_MODULE } from '../api/v1alpha1/index.js';
import { ErpguardError, ErrorCode } from '../errors/errors.js';
import { DEFAULT_MAX_FILE_BYTES, readPolicyInputs } from '../files/policy-files.js';
import { collectPolicies } from '../policy/collect.js';
import { listFlag, outputFlag, parseFlags, requiredFlag, stringFlag, timeFlag } from './args.js';
import { ExitCode, formatTable } from './io.js';
import type { CliIo } from './io.js';
import { reviewersFrom } from './policy-commands.js';

/** Plural resource names of the kinds the gate judges, for building reviews from manifests. */
const RESOURCES: Record<string, { group: string; version: string; resource: string }> = {
  Pod: { group: '', version: 'v1', resource: 'pods' },
  Deployment: { group: 'apps', version: 'v1', resource: 'deployments' },
  StatefulSet: { group: 'apps', version: 'v1', resource: 'statefulsets' },
  DaemonSet: { group: 'apps', version: 'v1', resource: 'daemonsets' },
  ReplicaSet: { group: 'apps', version: 'v1', resource: 'replicasets' },
  Job: { group: 'batch', version: 'v1', resource: 'jobs' },
  CronJob: { group: 'batch', version: 'v1', resource: 'cronjobs' },
  ErpIntegrationPolicy: {
    group: 'erpguard.io',
    version: 'v1alpha1',
    resource: 'erpintegrationpolicies',
  },
};

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

async function readYamlDocs(file: string): Promise<unknown[]> {
  const size = (await stat(file)).size;
  if (size > DEFAULT_MAX_FILE_BYTES)
    throw new ErpguardError(
      ErrorCode.InputTooLarge,
      `${file}: larger than ${DEFAULT_MAX_FILE_BYTES} bytes`,
    );
  try {
    return loadAll(await readFile(file, 'utf8'), {
      filename: file,
      maxAliases: 64,
      maxDepth: 64,
    }).filter((d) => d !== null && d !== undefined);
  } catch (error) {
    throw new ErpguardError(
      ErrorCode.ParseError,
      `${file}: ${error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error)}`,
    );
  }
}

/** Wraps one manifest into the CREATE review the API server would send. */
export function reviewFor(
  object: Obj,
  namespace: string,
  user: { username: string; groups: string[] },
  uid: string,
): Obj {
  const kind = typeof object['kind'] === 'string' ? object['kind'] : '';
  const resource = RESOURCES[kind];
  if (!resource)
    throw new ErpguardError(
      ErrorCode.InvalidDocument,
      `kind ${JSON.stringify(kind)} is not judged by erpguard (${Object.keys(RESOURCES).join(', ')})`,
    );
  const meta = isObj(object['metadata']) ? object['metadata'] : {};
  const gvk = { group: resource.group, version: resource.version, kind };
  const gvr = { group: resource.group, version: resource.version, resource: resource.resource };
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: gvk,
      resource: gvr,
      requestKind: gvk,
      requestResource: gvr,
      ...(typeof meta['name'] === 'string' ? { name: meta['name'] } : {}),
      namespace,
      operation: 'CREATE',
      userInfo: { username: user.username, groups: user.groups },
      object: { ...object, metadata: { ...meta, namespace } },
      oldObject: null,
      dryRun: true,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}

function parseLabels(text: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of (text ?? 'erpguard.io/enforce=true').split(',').filter(Boolean)) {
    const [key, value = ''] = pair.split('=');
    if (!key)
      throw new ErpguardError(
        ErrorCode.InvalidArgument,
        `--namespace-labels: ${JSON.stringify(pair)} is not key=value`,
      );
    labels[key.trim()] = value.trim();
  }
  return labels;
}

/** ServiceAccounts from a file, or (with a notice) each workload's ServiceAccount bound to its module label. */
async function serviceAccountsFrom(
  file: string | undefined,
  objects: Obj[],
  namespace: string,
  io: CliIo,
): Promise<ServiceAccountBinding[]> {
  if (file !== undefined) {
    return (await readYamlDocs(file))
      .filter(isObj)
      .filter((d) => d['kind'] === 'ServiceAccount')
      .map((d) => {
        const meta = isObj(d['metadata']) ? d['metadata'] : {};
        const labels = isObj(meta['labels']) ? meta['labels'] : {};
        const module = labels[LABEL_MODULE];
        return {
          namespace: typeof meta['namespace'] === 'string' ? meta['namespace'] : namespace,
          name: typeof meta['name'] === 'string' ? meta['name'] : '',
          ...(typeof module === 'string' ? { module } : {}),
        };
      });
  }
  if (objects.length > 0) {
    io.stderr(
      "note: no --service-accounts file: assuming each workload's ServiceAccount is bound to its module label\n",
    );
  }
  return objects.flatMap((o) => {
    const spec = isObj(o['spec']) ? o['spec'] : {};
    const template =
      o['kind'] === 'Pod'
        ? o
        : isObj(spec['template'])
          ? spec['template']
          : isObj(spec['jobTemplate'])
            ? (spec['jobTemplate']['spec'] as Obj | undefined)?.['template']
            : undefined;
    if (!isObj(template)) return [];
    const labels =
      isObj(template['metadata']) && isObj(template['metadata']['labels'])
        ? template['metadata']['labels']
        : {};
    const podSpec = isObj(template['spec']) ? template['spec'] : {};
    const module = labels[LABEL_MODULE];
    const name =
      typeof podSpec['serviceAccountName'] === 'string' ? podSpec['serviceAccountName'] : 'default';
    return typeof module === 'string' ? [{ namespace, name, module }] : [];
  });
}

export async function runAdmit(args: readonly string[], io: CliIo): Promise<ExitCode> {
  const parsed = parseFlags(
    args,
    {
      review: { type: 'string' },
      manifest: { type: 'string' },
      policies: { type: 'string' },
      namespace: { type: 'string', short: 'n' },
      'namespace-labels': { type: 'string' },
      'service-accounts': { type: 'string' },
      user: { type: 'string' },
      groups: { type: 'string' },
      reviewers: { type: 'string' },
      'reviewer-users': { type: 'string' },
      now: { type: 'string' },
      output: { type: 'string', short: 'o' },
    },
    false,
  );
  const output = outputFlag(parsed);
  const reviewFile = stringFlag(parsed, 'review');
  const manifestFile = stringFlag(parsed, 'manifest');
  if ((reviewFile === undefined) === (manifestFile === undefined))
    throw new ErpguardError(
      ErrorCode.InvalidArgument,
      'give exactly one of --review FILE or --manifest FILE',
    );
  const namespace = stringFlag(parsed, 'namespace') ?? 'default';
  const policies = await readPolicyInputs([requiredFlag(parsed, 'policies')]);
  for (const p of policies.problems) io.stderr(`error: ${p.code}: ${p.message}\n`);
  const collected = collectPolicies(policies.documents);

  const reviews: { label: string; review: unknown; object?: Obj }[] = [];
  if (reviewFile !== undefined) {
    const text = await readFile(reviewFile, 'utf8');
    let review: unknown;
    try {
      review = JSON.parse(text);
    } catch {
      [review] = await readYamlDocs(reviewFile);
    }
    const request = isObj(review) && isObj(review['request']) ? review['request'] : {};
    reviews.push({
      label: reviewFile,
      review,
      ...(isObj(request['object']) ? { object: request['object'] } : {}),
    });
  } else {
    const user = {
      username: stringFlag(parsed, 'user') ?? 'offline-user',
      groups: listFlag(parsed, 'groups') ?? ['system:authenticated'],
    };
    (await readYamlDocs(manifestFile ?? '')).filter(isObj).forEach((object) => {
      const meta = isObj(object['metadata']) ? object['metadata'] : {};
      const ns = typeof meta['namespace'] === 'string' ? meta['namespace'] : namespace;
      reviews.push({
        label: `${typeof object['kind'] === 'string' ? object['kind'] : '?'}/${typeof meta['name'] === 'string' ? meta['name'] : typeof meta['generateName'] === 'string' ? meta['generateName'] : '?'}`,
        review: reviewFor(object, ns, user, randomUUID()),
        object,
      });
    });
  }
  const objects = reviews.flatMap((r) => (r.object ? [r.object] : []));
  const namespaceNames = new Set([
    namespace,
    ...objects.map((o) =>
      isObj(o['metadata']) && typeof o['metadata']['namespace'] === 'string'
        ? o['metadata']['namespace']
        : namespace,
    ),
  ]);
  const labels = parseLabels(stringFlag(parsed, 'namespace-labels'));
  const snapshot: Snapshot = {
    policies: collected.policies.map((p) => p.policy),
    serviceAccounts: await serviceAccountsFrom(
      stringFlag(parsed, 'service-accounts'),
      objects,
      namespace,
      io,
    ),
    namespaces: [...namespaceNames].map((name): NamespaceInfo => ({ name, labels })),
  };
  const config: AdmissionConfig = {
    reviewers: reviewersFrom(parsed, io),
    ownNamespace: 'erpguard-system',
    sidecar: { image: 'ghcr.io/erpguard/erpguard:0.1.0' },
    trustDomain: 'cluster.local',
    controllerAddress: 'erpguard.erpguard-system.svc:15012',
    now: timeFlag(parsed, 'now', io.now()),
  };
  const results = reviews.map((r) => ({
    label: r.label,
    result: admitOffline(r.review, snapshot, config),
  }));
  if (output === 'json') {
    io.stdout(
      JSON.stringify(
        results.map((r) => ({
          object: r.label,
          response: r.result.review,
          patchedObject: r.result.patchedObject,
        })),
        null,
        2,
      ) + '\n',
    );
  } else {
    io.stdout(
      formatTable(
        ['OBJECT', 'ADMITTED', 'CODE', 'MESSAGE'],
        results.map((r) => {
          const finding = r.result.validation.findings[0] ?? r.result.mutation.findings[0];
          const injected = r.result.patchedObject !== undefined ? ' (sidecar injected)' : '';
          return [
            r.label,
            r.result.response.allowed ? 'yes' : 'NO',
            r.result.response.allowed
              ? r.result.response.warnings
                ? 'Warned'
                : 'Allowed'
              : (finding?.code ?? 'Denied'),
            (r.result.response.allowed
              ? (r.result.response.warnings?.join('; ') ?? `admitted${injected}`)
              : (r.result.response.status?.message ?? finding?.message ?? '')
            ).replace(/\n/g, ' '),
          ];
        }),
      ),
    );
  }
  return results.every((r) => r.result.response.allowed) ? ExitCode.Ok : ExitCode.Denied;
}

/**
 * Reading Kubernetes objects that arrive as untyped JSON: safe getters, the pod template of each
 * workload kind, equality, and the "never block" shapes of UPDATE.
 */
import type { AdmissionRequest } from './review.js';

export type JsonMap = Record<string, unknown>;

export function isMap(v: unknown): v is JsonMap {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `obj[k1][k2]...`, or undefined when any step is missing or not a map. */
export function dig(obj: unknown, ...path: string[]): unknown {
  let cur = obj;
  for (const k of path) {
    if (!isMap(cur) || !Object.hasOwn(cur, k)) return undefined;
    cur = cur[k];
  }
  return cur;
}

/** A string-to-string map at `path` (labels, annotations); non-string values are dropped. */
export function stringMap(obj: unknown, ...path: string[]): Record<string, string> {
  const m = dig(obj, ...path);
  const out: Record<string, string> = {};
  if (!isMap(m)) return out;
  for (const [k, v] of Object.entries(m)) if (typeof v === 'string') out[k] = v;
  return out;
}

export function stringAt(obj: unknown, ...path: string[]): string | undefined {
  const v = dig(obj, ...path);
  return typeof v === 'string' ? v : undefined;
}

/** Structural equality of JSON values (key order does not matter). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (isMap(a)) {
    if (!isMap(b)) return false;
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    if (ka.length !== kb.length) return false;
    for (const k of ka) if (!Object.hasOwn(b, k) || !jsonEqual(a[k], b[k])) return false;
    return true;
  }
  return false;
}

/** A copy of `obj` without the listed top-level keys and `metadata` keys. */
function without(obj: JsonMap, top: readonly string[], meta: readonly string[]): JsonMap {
  const out: JsonMap = {};
  for (const [k, v] of Object.entries(obj)) {
    if (top.includes(k)) continue;
    if (k === 'metadata' && isMap(v)) {
      const m: JsonMap = {};
      for (const [mk, mv] of Object.entries(v)) if (!meta.includes(mk)) m[mk] = mv;
      out[k] = m;
    } else {
      out[k] = v;
    }
  }
  return out;
}

/** Metadata the API server itself changes on every write; never a user's intent. */
const VOLATILE_META = ['resourceVersion', 'managedFields', 'generation'];

/**
 * UPDATE that changes nothing but removing finalizers (a controller finishing its cleanup).
 * Must never be blocked, or deletion hangs forever.
 */
export function isFinalizerRemovalOnly(req: AdmissionRequest): boolean {
  if (req.operation !== 'UPDATE' || !isMap(req.object) || !isMap(req.oldObject)) return false;
  const oldF = finalizers(req.oldObject);
  const newF = finalizers(req.object);
  if (newF.length >= oldF.length) return false;
  const remaining = [...oldF];
  for (const f of newF) {
    const i = remaining.indexOf(f);
    if (i < 0) return false; // a finalizer was added or renamed
    remaining.splice(i, 1);
  }
  const strip = [...VOLATILE_META, 'finalizers'];
  return jsonEqual(
    without(req.oldObject, ['status'], strip),
    without(req.object, ['status'], strip),
  );
}

function finalizers(obj: JsonMap): string[] {
  const f = dig(obj, 'metadata', 'finalizers');
  return Array.isArray(f) ? f.filter((x): x is string => typeof x === 'string') : [];
}

/** UPDATE of an object being deleted that touches only metadata (and status). */
export function isDeletingMetadataOnly(req: AdmissionRequest): boolean {
  if (req.operation !== 'UPDATE' || !isMap(req.object) || !isMap(req.oldObject)) return false;
  const deleting =
    dig(req.oldObject, 'metadata', 'deletionTimestamp') !== undefined ||
    dig(req.object, 'metadata', 'deletionTimestamp') !== undefined;
  if (!deleting) return false;
  return jsonEqual(
    without(req.oldObject, ['metadata', 'status'], []),
    without(req.object, ['metadata', 'status'], []),
  );
}

/** Workload kinds and where their pod template lives. */
export type WorkloadKind =
  'Pod' | 'Deployment' | 'StatefulSet' | 'DaemonSet' | 'ReplicaSet' | 'Job' | 'CronJob';

const WORKLOADS: Record<string, { kind: WorkloadKind; template: readonly string[] }> = {
  '/Pod': { kind: 'Pod', template: [] },
  'apps/Deployment': { kind: 'Deployment', template: ['spec', 'template'] },
  'apps/StatefulSet': { kind: 'StatefulSet', template: ['spec', 'template'] },
  'apps/DaemonSet': { kind: 'DaemonSet', template: ['spec', 'template'] },
  'apps/ReplicaSet': { kind: 'ReplicaSet', template: ['spec', 'template'] },
  'batch/Job': { kind: 'Job', template: ['spec', 'template'] },
  'batch/CronJob': { kind: 'CronJob', template: ['spec', 'jobTemplate', 'spec', 'template'] },
};

export function workloadKind(req: AdmissionRequest): WorkloadKind | undefined {
  return WORKLOADS[`${req.kind.group}/${req.kind.kind}`]?.kind;
}

export interface PodTemplate {
  /** Dotted path of the template (`spec.template`), empty for a Pod. */
  path: string;
  metadata: JsonMap;
  spec: JsonMap;
}

export type TemplateResult =
  { ok: true; template: PodTemplate } | { ok: false; field: string; message: string };

/** The pod template of a workload (the Pod itself for kind Pod). */
export function podTemplate(kind: WorkloadKind, obj: JsonMap): TemplateResult {
  const entry = Object.values(WORKLOADS).find((w) => w.kind === kind);
  const tokens = entry?.template ?? [];
  const base = tokens.length === 0 ? obj : dig(obj, ...tokens);
  const path = tokens.join('.');
  const at = (k: string): string => (path === '' ? k : `${path}.${k}`);
  if (!isMap(base)) return { ok: false, field: path, message: 'is missing or not an object' };
  const spec = base['spec'];
  if (!isMap(spec)) return { ok: false, field: at('spec'), message: 'is missing or not an object' };
  const metadata = base['metadata'];
  if (metadata !== undefined && !isMap(metadata)) {
    return { ok: false, field: at('metadata'), message: 'must be an object' };
  }
  return { ok: true, template: { path, metadata: metadata ?? {}, spec } };
}

/** `a.b` joined with a key, quoting keys that contain dots or slashes: `labels['erpguard.io/module']`. */
export function fieldPath(base: string, ...keys: (string | number)[]): string {
  let out = base;
  for (const k of keys) {
    if (typeof k === 'number') out += `[${k}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) out += out === '' ? k : `.${k}`;
    else out += `['${k}']`;
  }
  return out;
}

export interface ContainerRef {
  /** `initContainers`, `containers` or `ephemeralContainers`. */
  list: 'initContainers' | 'containers' | 'ephemeralContainers';
  index: number;
  container: JsonMap;
  name: string;
}

/** Containers of a pod spec in order: init containers first, then regular ones. */
export function containersOf(
  spec: JsonMap,
  lists: readonly ContainerRef['list'][] = ['initContainers', 'containers'],
): ContainerRef[] {
  const out: ContainerRef[] = [];
  for (const list of lists) {
    const arr = spec[list];
    if (!Array.isArray(arr)) continue;
    arr.forEach((c, index) => {
      if (isMap(c))
        out.push({
          list,
          index,
          container: c,
          name: typeof c['name'] === 'string' ? c['name'] : '',
        });
    });
  }
  return out;
}

/** `ns/name` for messages; never prints undefined (generateName pods have no name yet). */
export function displayName(req: AdmissionRequest, obj: unknown): string {
  const nonEmpty = (v: string | undefined): string | undefined => (v === '' ? undefined : v);
  const ns = nonEmpty(req.namespace) ?? nonEmpty(stringAt(obj, 'metadata', 'namespace'));
  const gen = nonEmpty(stringAt(obj, 'metadata', 'generateName'));
  const name =
    nonEmpty(req.name) ??
    nonEmpty(stringAt(obj, 'metadata', 'name')) ??
    (gen !== undefined ? `${gen}<generated>` : '<unnamed>');
  return ns === undefined ? name : `${ns}/${name}`;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export function isDns1123Label(s: string): boolean {
  return s.length > 0 && s.length <= 63 && DNS1123_LABEL.test(s);
}

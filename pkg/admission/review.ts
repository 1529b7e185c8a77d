/**
 * admission.k8s.io/v1 AdmissionReview: the wire types and a structural parser. The parser is
 * shared by the HTTPS adapter (a failure is HTTP 400 with the reason) and the offline CLI (a
 * failure is an InvalidDocument error), so both judge exactly the same shape.
 */
import { ErrorCode } from '../errors/errors.js';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
export const ADMISSION_KIND = 'AdmissionReview';

export type Operation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
export const OPERATIONS: readonly Operation[] = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT'];

export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

export interface GroupVersionResource {
  group: string;
  version: string;
  resource: string;
}

export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

/** The request half of an AdmissionReview, as the API server sends it. */
export interface AdmissionRequest {
  uid: string;
  kind: GroupVersionKind;
  resource: GroupVersionResource;
  subResource?: string;
  requestKind?: GroupVersionKind;
  requestResource?: GroupVersionResource;
  requestSubResource?: string;
  /** Empty or absent for CREATE with generateName. */
  name?: string;
  /** Absent for cluster-scoped objects; always set for namespaced ones, even when the object has none. */
  namespace?: string;
  operation: Operation;
  userInfo: UserInfo;
  /** null for DELETE. */
  object: unknown;
  /** null for CREATE and CONNECT. */
  oldObject: unknown;
  dryRun: boolean;
  options: unknown;
}

export interface AdmissionStatus {
  code: number;
  message: string;
  /** metav1.StatusReason, e.g. `Forbidden`, `Invalid`, `InternalError`, `ServiceUnavailable`. */
  reason?: string;
}

/** The response half. `uid` echoes the request. A validating response never carries `patch`. */
export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: AdmissionStatus;
  /** base64 of a JSON Patch (RFC 6902) document. */
  patch?: string;
  patchType?: 'JSONPatch';
  warnings?: string[];
  /** Keys are prefixed with the webhook's name by the API server. */
  auditAnnotations?: Record<string, string>;
}

export interface AdmissionReview {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: typeof ADMISSION_KIND;
  request: AdmissionRequest;
}

export interface AdmissionReviewResponse {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: typeof ADMISSION_KIND;
  response: AdmissionResponse;
}

export type ParseReviewResult =
  | { ok: true; review: AdmissionReview }
  | {
      ok: false;
      /** InvalidDocument for a wrong shape; the adapter uses ParseError for bad JSON. */
      code: typeof ErrorCode.InvalidDocument;
      /** Dotted field path of the first problem. */
      field: string;
      message: string;
      /** The request uid when it could be read, so a 400 body can still echo it. */
      uid?: string;
    };

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class ShapeError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

function str(obj: Json, key: string, path: string, required: boolean): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (required) throw new ShapeError(`${path}.${key}`, 'is required');
    return undefined;
  }
  if (typeof v !== 'string') throw new ShapeError(`${path}.${key}`, 'must be a string');
  return v;
}

/** `{group, version, <last>}` (a GroupVersionKind or GroupVersionResource) at `obj[key]`. */
function groupVersion<K extends 'kind' | 'resource'>(
  obj: Json,
  key: string,
  path: string,
  required: boolean,
  last: K,
): ({ group: string; version: string } & Record<K, string>) | undefined {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (required) throw new ShapeError(`${path}.${key}`, 'is required');
    return undefined;
  }
  if (!isRecord(v)) throw new ShapeError(`${path}.${key}`, 'must be an object');
  const p = `${path}.${key}`;
  return {
    group: str(v, 'group', p, false) ?? '',
    version: str(v, 'version', p, true) ?? '',
    [last]: str(v, last, p, true) ?? '',
  } as { group: string; version: string } & Record<K, string>;
}

const gvk = (
  obj: Json,
  key: string,
  path: string,
  required: boolean,
): GroupVersionKind | undefined => groupVersion(obj, key, path, required, 'kind');
const gvr = (
  obj: Json,
  key: string,
  path: string,
  required: boolean,
): GroupVersionResource | undefined => groupVersion(obj, key, path, required, 'resource');

function userInfo(obj: Json, path: string): UserInfo {
  const v = obj['userInfo'];
  const p = `${path}.userInfo`;
  // The API server always sends userInfo; an anonymous request still has a username.
  if (!isRecord(v)) throw new ShapeError(p, 'is required and must be an object');
  const groupsRaw = v['groups'];
  let groups: string[] = [];
  if (groupsRaw !== undefined && groupsRaw !== null) {
    if (!Array.isArray(groupsRaw) || !groupsRaw.every((g): g is string => typeof g === 'string')) {
      throw new ShapeError(`${p}.groups`, 'must be a list of strings');
    }
    groups = groupsRaw;
  }
  const info: UserInfo = { username: str(v, 'username', p, false) ?? '', groups };
  const uid = str(v, 'uid', p, false);
  if (uid !== undefined) info.uid = uid;
  const extra = v['extra'];
  if (isRecord(extra)) {
    const out: Record<string, string[]> = {};
    for (const [k, val] of Object.entries(extra)) {
      if (Array.isArray(val)) out[k] = val.filter((x): x is string => typeof x === 'string');
    }
    info.extra = out;
  }
  return info;
}

/**
 * Checks that `body` is an admission.k8s.io/v1 AdmissionReview with a usable request. Objects
 * are not interpreted here (they are judged by the handlers, which deny unexpected shapes with a
 * message instead of failing the HTTP call).
 */
export function parseAdmissionReview(body: unknown): ParseReviewResult {
  let uid: string | undefined;
  try {
    if (!isRecord(body)) throw new ShapeError('', 'the body must be a JSON object');
    const apiVersion = body['apiVersion'];
    if (apiVersion !== ADMISSION_API_VERSION) {
      throw new ShapeError(
        'apiVersion',
        `must be ${ADMISSION_API_VERSION} (got ${JSON.stringify(apiVersion ?? null)}); configure admissionReviewVersions: [v1]`,
      );
    }
    if (body['kind'] !== ADMISSION_KIND) {
      throw new ShapeError(
        'kind',
        `must be ${ADMISSION_KIND} (got ${JSON.stringify(body['kind'] ?? null)})`,
      );
    }
    const r = body['request'];
    if (!isRecord(r)) throw new ShapeError('request', 'is required and must be an object');
    const rawUid = r['uid'];
    if (typeof rawUid !== 'string' || rawUid.length === 0) {
      throw new ShapeError('request.uid', 'is required and must be a non-empty string');
    }
    uid = rawUid;
    const op = str(r, 'operation', 'request', true);
    if (!OPERATIONS.includes(op as Operation)) {
      throw new ShapeError('request.operation', `must be one of ${OPERATIONS.join(', ')}`);
    }
    const dryRun = r['dryRun'];
    if (dryRun !== undefined && dryRun !== null && typeof dryRun !== 'boolean') {
      throw new ShapeError('request.dryRun', 'must be a boolean');
    }
    const request: AdmissionRequest = {
      uid: rawUid,
      kind: gvk(r, 'kind', 'request', true) as GroupVersionKind,
      resource: gvr(r, 'resource', 'request', true) as GroupVersionResource,
      operation: op as Operation,
      userInfo: userInfo(r, 'request'),
      object: r['object'] ?? null,
      oldObject: r['oldObject'] ?? null,
      dryRun: dryRun === true,
      options: r['options'] ?? null,
    };
    const sub = str(r, 'subResource', 'request', false);
    if (sub !== undefined && sub !== '') request.subResource = sub;
    const rk = gvk(r, 'requestKind', 'request', false);
    if (rk !== undefined) request.requestKind = rk;
    const rr = gvr(r, 'requestResource', 'request', false);
    if (rr !== undefined) request.requestResource = rr;
    const rsub = str(r, 'requestSubResource', 'request', false);
    if (rsub !== undefined && rsub !== '') request.requestSubResource = rsub;
    const name = str(r, 'name', 'request', false);
    if (name !== undefined && name !== '') request.name = name;
    const namespace = str(r, 'namespace', 'request', false);
    if (namespace !== undefined && namespace !== '') request.namespace = namespace;
    for (const key of ['object', 'oldObject'] as const) {
      const o = request[key];
      if (o !== null && !isRecord(o)) throw new ShapeError(`request.${key}`, 'must be an object');
    }
    return {
      ok: true,
      review: { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_KIND, request },
    };
  } catch (e) {
    if (!(e instanceof ShapeError)) throw e;
    const out: ParseReviewResult = {
      ok: false,
      code: ErrorCode.InvalidDocument,
      field: e.field,
      message: e.field === '' ? e.message : `${e.field}: ${e.message}`,
    };
    if (uid !== undefined) out.uid = uid;
    return out;
  }
}

/** Wraps a response in the review envelope the API server expects. */
export function reviewResponse(response: AdmissionResponse): AdmissionReviewResponse {
  return { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_KIND, response };
}

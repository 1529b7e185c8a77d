/**
 * Semantic validation of an ErpIntegrationPolicy document, with Kubernetes-style field paths
 * (`spec.rules[2].paths[0]`) and messages. The CRD schema (crds/) enforces the same shape in the
 * API server; test/integration/crd-schema.test.ts checks that both agree on every sample.
 *
 * Unknown fields are errors here, while the API server prunes them: a file is what a user wrote,
 * and a silently ignored typo (`rateLimt`) is exactly the mistake a policy review must not miss.
 */
import {
  ANNOTATION_APPROVAL,
  ANY_METHOD,
  API_VERSION,
  HTTP_METHODS,
  KIND,
  POLICY_MODES,
} from '../api/v1alpha1/index.js';
import type { Approval, ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { parseDuration } from './duration.js';
import { parseSelector } from './selector.js';

/** Field error codes, after Kubernetes' field.ErrorType. */
export const FieldErrorCode = {
  /** A required field is missing or empty. */
  Required: 'FieldValueRequired',
  /** The value has the right type but is not acceptable (the message says why). */
  Invalid: 'FieldValueInvalid',
  /** The value is not one of the supported values (listed in the message). */
  NotSupported: 'FieldValueNotSupported',
  /** The value repeats an earlier entry of the same list. */
  Duplicate: 'FieldValueDuplicate',
  /** The string is longer than its bound. */
  TooLong: 'FieldValueTooLong',
  /** The list has more items than its bound. */
  TooMany: 'FieldValueTooMany',
  /** The value has the wrong type (e.g. a string where a number belongs). */
  TypeInvalid: 'FieldValueTypeInvalid',
  /** The field may not be set here. */
  Forbidden: 'FieldValueForbidden',
  /** The field is not part of the schema (in files a typo is an error, not pruned). */
  Unknown: 'FieldUnknown',
} as const;
export type FieldErrorCode = (typeof FieldErrorCode)[keyof typeof FieldErrorCode];

export interface FieldError {
  field: string;
  message: string;
  code: FieldErrorCode;
}

export interface ValidationResult {
  /** Set when there are no errors: the document, typed. */
  policy?: ErpIntegrationPolicy;
  errors: FieldError[];
  warnings: FieldError[];
}

/** Bounds shared with the CRD schema. */
export const LIMITS = {
  name: 253,
  module: 63,
  rules: 64,
  methods: 8,
  paths: 32,
  pathLength: 1024,
  grpcService: 255,
  grpcMethods: 32,
  grpcMethod: 128,
  selectors: 32,
  description: 1024,
  requestsPerSecond: 100_000,
  burst: 1_000_000,
  duration: 64,
  annotation: 4096,
} as const;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const GRPC_SERVICE = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PARAM_SEGMENT = /^\{[A-Za-z_][A-Za-z0-9_]*\}$/;
/** Characters allowed in a literal path segment: RFC 3986 pchar without `%` and `;`. */
const LITERAL_SEGMENT = /^[A-Za-z0-9\-._~!$&'()*+,=:@]+$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** RFC 3339 with a real calendar date and time (`2027-06-31` is refused, not rolled over). */
export function isRfc3339(text: string): boolean {
  const match = RFC3339.exec(text);
  if (!match) return false;
  const [date = '', time = ''] = text.split(/[Tt]/);
  const [year, month, day] = date.split('-').map(Number);
  const [hour, minute, second] = time.slice(0, 8).split(':').map(Number);
  if (year === undefined || month === undefined || day === undefined) return false;
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return (
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth &&
    (hour ?? 99) <= 23 &&
    (minute ?? 99) <= 59 &&
    (second ?? 99) <= 60 &&
    !Number.isNaN(Date.parse(text))
  );
}

const TOP_KEYS = ['apiVersion', 'kind', 'metadata', 'spec', 'status'];
const META_KEYS = [
  'name',
  'namespace',
  'labels',
  'annotations',
  'generation',
  'resourceVersion',
  'uid',
  'creationTimestamp',
  'deletionTimestamp',
  'managedFields',
  'finalizers',
  'ownerReferences',
  'generateName',
  'deletionGracePeriodSeconds',
];
const SPEC_KEYS = [
  'source',
  'destination',
  'mode',
  'rules',
  'rateLimit',
  'dataProtection',
  'certificateTTL',
  'validUntil',
  'description',
];

type Obj = Record<string, unknown>;

class Collector {
  readonly errors: FieldError[] = [];
  readonly warnings: FieldError[] = [];
  error(field: string, code: FieldErrorCode, message: string): void {
    this.errors.push({ field, code, message });
  }
  warn(field: string, code: FieldErrorCode, message: string): void {
    this.warnings.push({ field, code, message });
  }
}

const isObject = (value: unknown): value is Obj =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const quote = (value: unknown): string => JSON.stringify(value)?.slice(0, 80) ?? String(value);

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** Checks an object's type and its keys; returns it when it is an object. */
function object(
  c: Collector,
  value: unknown,
  field: string,
  allowed: readonly string[],
): Obj | undefined {
  if (value === undefined || value === null) {
    c.error(field, FieldErrorCode.Required, `${field}: Required value`);
    return undefined;
  }
  if (!isObject(value)) {
    c.error(
      field,
      FieldErrorCode.TypeInvalid,
      `${field}: Invalid value: ${typeName(value)}: must be an object`,
    );
    return undefined;
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      c.error(
        `${field}.${key}`,
        FieldErrorCode.Unknown,
        `${field}.${key}: unknown field ${quote(key)}`,
      );
    }
  }
  return value;
}

function requireString(
  c: Collector,
  value: unknown,
  field: string,
  maxLength: number,
): string | undefined {
  if (value === undefined || value === null || value === '') {
    c.error(field, FieldErrorCode.Required, `${field}: Required value`);
    return undefined;
  }
  return optionalString(c, value, field, maxLength);
}

function optionalString(
  c: Collector,
  value: unknown,
  field: string,
  maxLength: number,
): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    c.error(
      field,
      FieldErrorCode.TypeInvalid,
      `${field}: Invalid value: ${typeName(value)}: must be a string`,
    );
    return undefined;
  }
  if (value.length > maxLength) {
    c.error(
      field,
      FieldErrorCode.TooLong,
      `${field}: Too long: may not be more than ${maxLength} characters`,
    );
    return undefined;
  }
  return value;
}

function list(
  c: Collector,
  value: unknown,
  field: string,
  min: number,
  max: number,
): unknown[] | undefined {
  if (value === undefined || value === null) {
    if (min > 0) c.error(field, FieldErrorCode.Required, `${field}: Required value`);
    return undefined;
  }
  if (!Array.isArray(value)) {
    c.error(
      field,
      FieldErrorCode.TypeInvalid,
      `${field}: Invalid value: ${typeName(value)}: must be a list`,
    );
    return undefined;
  }
  if (value.length < min) {
    c.error(
      field,
      FieldErrorCode.Required,
      `${field}: Required value: must have at least ${min} item${min === 1 ? '' : 's'}`,
    );
  }
  if (value.length > max) {
    c.error(
      field,
      FieldErrorCode.TooMany,
      `${field}: Too many: ${value.length}: must have at most ${max} items`,
    );
    return (value as unknown[]).slice(0, max);
  }
  return value as unknown[];
}

function duplicates(c: Collector, values: readonly unknown[], field: string): void {
  const seen = new Set<string>();
  values.forEach((value, i) => {
    const key = JSON.stringify(value);
    if (seen.has(key))
      c.error(
        `${field}[${i}]`,
        FieldErrorCode.Duplicate,
        `${field}[${i}]: Duplicate value: ${quote(value)}`,
      );
    seen.add(key);
  });
}

function moduleRef(c: Collector, value: unknown, field: string, allowNamespace: boolean): void {
  const ref = object(c, value, field, allowNamespace ? ['module', 'namespace'] : ['module']);
  if (!ref) return;
  const module = requireString(c, ref['module'], `${field}.module`, LIMITS.module);
  if (module !== undefined && !DNS_LABEL.test(module)) {
    c.error(
      `${field}.module`,
      FieldErrorCode.Invalid,
      `${field}.module: Invalid value: ${quote(module)}: must be a lower-case DNS-1123 label (a-z, 0-9, '-')`,
    );
  }
  const namespace = optionalString(c, ref['namespace'], `${field}.namespace`, LIMITS.module);
  if (namespace !== undefined && !DNS_LABEL.test(namespace)) {
    c.error(
      `${field}.namespace`,
      FieldErrorCode.Invalid,
      `${field}.namespace: Invalid value: ${quote(namespace)}: must be a DNS-1123 label`,
    );
  }
}

/** Validates one path template; returns a problem description or undefined. */
export function pathTemplateProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return "must start with '/'";
  if (path === '/') return undefined;
  if (path === '/**') return undefined;
  const segments = path.slice(1).split('/');
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] ?? '';
    const last = i === segments.length - 1;
    if (segment === '')
      return last
        ? "must not end with '/' (write the path without it)"
        : "must not contain empty segments ('//')";
    if (/^\.+$/.test(segment)) return "must not contain '.' or '..' segments";
    if (segment === '**') {
      if (!last) return "'**' is only allowed as the last segment";
      continue;
    }
    if (segment.startsWith('{') || segment.endsWith('}')) {
      if (!PARAM_SEGMENT.test(segment))
        return `segment ${quote(segment)} must be a whole-segment parameter like '{id}'`;
      continue;
    }
    if (segment.includes('%')) return 'must not contain percent-encoding: write the decoded path';
    if (segment.includes(';')) return "must not contain ';' path parameters";
    if (!LITERAL_SEGMENT.test(segment))
      return `segment ${quote(segment)} contains characters not allowed in a path`;
  }
  return undefined;
}

function httpRule(c: Collector, rule: Obj, field: string): void {
  const methods = list(c, rule['methods'], `${field}.methods`, 1, LIMITS.methods);
  if (methods) {
    methods.forEach((method, i) => {
      const mf = `${field}.methods[${i}]`;
      if (typeof method !== 'string') {
        c.error(
          mf,
          FieldErrorCode.TypeInvalid,
          `${mf}: Invalid value: ${typeName(method)}: must be a string`,
        );
        return;
      }
      if (method === ANY_METHOD || (HTTP_METHODS as readonly string[]).includes(method)) return;
      const upper = method.toUpperCase();
      const hint = (HTTP_METHODS as readonly string[]).includes(upper)
        ? `: methods are case-sensitive, write ${quote(upper)}`
        : `: supported values: ${HTTP_METHODS.map((m) => `"${m}"`).join(', ')}, "*"`;
      c.error(mf, FieldErrorCode.NotSupported, `${mf}: Unsupported value: ${quote(method)}${hint}`);
    });
    if (methods.includes(ANY_METHOD) && methods.length > 1) {
      c.error(
        `${field}.methods`,
        FieldErrorCode.Invalid,
        `${field}.methods: Invalid value: '*' already means every method and must be the only entry`,
      );
    }
    duplicates(c, methods, `${field}.methods`);
  }
  const paths = list(c, rule['paths'], `${field}.paths`, 1, LIMITS.paths);
  if (paths) {
    paths.forEach((path, i) => {
      const pf = `${field}.paths[${i}]`;
      const text = optionalString(c, path, pf, LIMITS.pathLength);
      if (text === undefined) return;
      const problem = pathTemplateProblem(text);
      if (problem)
        c.error(pf, FieldErrorCode.Invalid, `${pf}: Invalid value: ${quote(text)}: ${problem}`);
    });
    duplicates(c, paths, `${field}.paths`);
  }
}

function grpcRule(c: Collector, value: unknown, field: string): void {
  const grpc = object(c, value, field, ['service', 'methods']);
  if (!grpc) return;
  const service = requireString(c, grpc['service'], `${field}.service`, LIMITS.grpcService);
  if (service !== undefined && !GRPC_SERVICE.test(service)) {
    c.error(
      `${field}.service`,
      FieldErrorCode.Invalid,
      `${field}.service: Invalid value: ${quote(service)}: must be a fully qualified service name like 'erp.finance.v1.Invoices'`,
    );
  }
  const methods = list(c, grpc['methods'], `${field}.methods`, 1, LIMITS.grpcMethods);
  if (!methods) return;
  methods.forEach((method, i) => {
    const mf = `${field}.methods[${i}]`;
    const text = optionalString(c, method, mf, LIMITS.grpcMethod);
    if (text !== undefined && text !== ANY_METHOD && !GRPC_METHOD.test(text)) {
      c.error(
        mf,
        FieldErrorCode.Invalid,
        `${mf}: Invalid value: ${quote(text)}: must be a method name like 'GetInvoice' or '*'`,
      );
    }
  });
  if (methods.includes(ANY_METHOD) && methods.length > 1) {
    c.error(
      `${field}.methods`,
      FieldErrorCode.Invalid,
      `${field}.methods: Invalid value: '*' already means every method and must be the only entry`,
    );
  }
  duplicates(c, methods, `${field}.methods`);
}

function rules(c: Collector, value: unknown): void {
  const items = list(c, value, 'spec.rules', 1, LIMITS.rules);
  items?.forEach((item, i) => {
    const field = `spec.rules[${i}]`;
    const rule = object(c, item, field, ['methods', 'paths', 'grpc']);
    if (!rule) return;
    const isHttp = rule['methods'] !== undefined || rule['paths'] !== undefined;
    const isGrpc = rule['grpc'] !== undefined;
    if (isHttp && isGrpc) {
      c.error(
        field,
        FieldErrorCode.Invalid,
        `${field}: Invalid value: a rule is either HTTP ('methods' and 'paths') or gRPC ('grpc'), not both`,
      );
      return;
    }
    if (!isHttp && !isGrpc) {
      c.error(
        field,
        FieldErrorCode.Required,
        `${field}: Required value: a rule needs 'methods' and 'paths', or 'grpc'`,
      );
      return;
    }
    if (isGrpc) grpcRule(c, rule['grpc'], `${field}.grpc`);
    else httpRule(c, rule, field);
  });
}

function rateLimit(c: Collector, value: unknown): void {
  if (value === undefined) return;
  const limit = object(c, value, 'spec.rateLimit', ['requestsPerSecond', 'burst']);
  if (!limit) return;
  const rps = integer(
    c,
    limit['requestsPerSecond'],
    'spec.rateLimit.requestsPerSecond',
    1,
    LIMITS.requestsPerSecond,
    true,
  );
  const burst = integer(c, limit['burst'], 'spec.rateLimit.burst', 1, LIMITS.burst, false);
  if (rps !== undefined && burst !== undefined && burst < rps) {
    c.error(
      'spec.rateLimit.burst',
      FieldErrorCode.Invalid,
      `spec.rateLimit.burst: Invalid value: ${burst}: must be greater than or equal to requestsPerSecond (${rps})`,
    );
  }
}

function integer(
  c: Collector,
  value: unknown,
  field: string,
  min: number,
  max: number,
  required: boolean,
): number | undefined {
  if (value === undefined) {
    if (required) c.error(field, FieldErrorCode.Required, `${field}: Required value`);
    return undefined;
  }
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    c.error(
      field,
      FieldErrorCode.TypeInvalid,
      `${field}: Invalid value: ${quote(value)}: must be an integer`,
    );
    return undefined;
  }
  if (value < min || value > max) {
    c.error(
      field,
      FieldErrorCode.Invalid,
      `${field}: Invalid value: ${value}: must be between ${min} and ${max}`,
    );
    return undefined;
  }
  return value;
}

function dataProtection(c: Collector, value: unknown): void {
  if (value === undefined) return;
  const dp = object(c, value, 'spec.dataProtection', ['mask', 'tokenize']);
  if (!dp) return;
  for (const key of ['mask', 'tokenize'] as const) {
    const field = `spec.dataProtection.${key}`;
    const selectors = list(c, dp[key], field, 0, LIMITS.selectors);
    selectors?.forEach((selector, i) => {
      const sf = `${field}[${i}]`;
      const text = optionalString(c, selector, sf, 256);
      if (text === undefined) return;
      const parsed = parseSelector(text);
      if (!parsed.ok)
        c.error(
          sf,
          FieldErrorCode.Invalid,
          `${sf}: Invalid value: ${quote(text)}: ${parsed.message}`,
        );
    });
    if (selectors) duplicates(c, selectors, field);
  }
}

/** Parses the approval annotation; errors name the annotation. */
export function parseApprovalAnnotation(
  text: string,
  field = `metadata.annotations[${ANNOTATION_APPROVAL}]`,
): { approval?: Approval; error?: FieldError } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return {
      error: {
        field,
        code: FieldErrorCode.Invalid,
        message: `${field}: Invalid value: must be JSON like {"by":"alice","at":"...","specHash":"sha256:..."}`,
      },
    };
  }
  const c = new Collector();
  const obj = object(c, value, field, ['by', 'groups', 'at', 'specHash']);
  if (obj) {
    requireString(c, obj['by'], `${field}.by`, 253);
    const at = requireString(c, obj['at'], `${field}.at`, 64);
    if (at !== undefined && !isRfc3339(at))
      c.error(
        `${field}.at`,
        FieldErrorCode.Invalid,
        `${field}.at: Invalid value: ${quote(at)}: must be an RFC 3339 time`,
      );
    const hash = requireString(c, obj['specHash'], `${field}.specHash`, 80);
    if (hash !== undefined && !/^sha256:[0-9a-f]{64}$/.test(hash))
      c.error(
        `${field}.specHash`,
        FieldErrorCode.Invalid,
        `${field}.specHash: Invalid value: must be 'sha256:' followed by 64 lower-case hex digits`,
      );
    const groups = list(c, obj['groups'], `${field}.groups`, 0, 64);
    groups?.forEach((g, i) => optionalString(c, g, `${field}.groups[${i}]`, 253));
  }
  const first = c.errors[0];
  if (first) return { error: first };
  return { approval: value as Approval };
}

/**
 * Validates a parsed document. `origin` (e.g. `policies/crm.yaml#1`) is only used by callers for
 * messages; field paths are relative to the object.
 */
export function validatePolicyDocument(doc: unknown): ValidationResult {
  const c = new Collector();
  const top = object(c, doc, '<root>', TOP_KEYS);
  if (!top) return { errors: c.errors, warnings: c.warnings };
  if (top['apiVersion'] !== API_VERSION) {
    c.error(
      'apiVersion',
      top['apiVersion'] === undefined ? FieldErrorCode.Required : FieldErrorCode.NotSupported,
      `apiVersion: Unsupported value: ${quote(top['apiVersion'])}: must be "${API_VERSION}"`,
    );
  }
  if (top['kind'] !== KIND) {
    c.error(
      'kind',
      top['kind'] === undefined ? FieldErrorCode.Required : FieldErrorCode.NotSupported,
      `kind: Unsupported value: ${quote(top['kind'])}: must be "${KIND}"`,
    );
  }
  const meta = object(c, top['metadata'] ?? undefined, 'metadata', META_KEYS);
  if (meta) {
    const name = requireString(c, meta['name'], 'metadata.name', LIMITS.name);
    if (name !== undefined && !DNS_SUBDOMAIN.test(name)) {
      c.error(
        'metadata.name',
        FieldErrorCode.Invalid,
        `metadata.name: Invalid value: ${quote(name)}: must be a lower-case DNS-1123 subdomain`,
      );
    }
    const ns = optionalString(c, meta['namespace'], 'metadata.namespace', LIMITS.module);
    if (ns !== undefined && !DNS_LABEL.test(ns))
      c.error(
        'metadata.namespace',
        FieldErrorCode.Invalid,
        `metadata.namespace: Invalid value: ${quote(ns)}: must be a DNS-1123 label`,
      );
    for (const mapName of ['labels', 'annotations'] as const) {
      const map = meta[mapName];
      if (map === undefined) continue;
      if (!isObject(map)) {
        c.error(
          `metadata.${mapName}`,
          FieldErrorCode.TypeInvalid,
          `metadata.${mapName}: Invalid value: must be a map of strings`,
        );
        continue;
      }
      for (const [key, val] of Object.entries(map)) {
        if (typeof val !== 'string')
          c.error(
            `metadata.${mapName}[${key}]`,
            FieldErrorCode.TypeInvalid,
            `metadata.${mapName}[${key}]: Invalid value: ${typeName(val)}: must be a string`,
          );
      }
    }
    const approval = isObject(meta['annotations'])
      ? meta['annotations'][ANNOTATION_APPROVAL]
      : undefined;
    if (typeof approval === 'string') {
      const parsed = parseApprovalAnnotation(approval);
      if (parsed.error) c.errors.push(parsed.error);
    }
  }
  const spec = object(c, top['spec'], 'spec', SPEC_KEYS);
  if (spec) {
    moduleRef(c, spec['source'], 'spec.source', true);
    moduleRef(c, spec['destination'], 'spec.destination', false);
    const source = isObject(spec['source']) ? spec['source'] : undefined;
    const destination = isObject(spec['destination']) ? spec['destination'] : undefined;
    if (
      source?.['module'] !== undefined &&
      source['module'] === destination?.['module'] &&
      (source['namespace'] === undefined || source['namespace'] === meta?.['namespace'])
    ) {
      c.error(
        'spec.destination.module',
        FieldErrorCode.Invalid,
        `spec.destination.module: Invalid value: ${quote(destination['module'])}: must differ from spec.source.module (a module does not need a policy to call itself)`,
      );
    }
    if (
      spec['mode'] !== undefined &&
      !(POLICY_MODES as readonly unknown[]).includes(spec['mode'])
    ) {
      c.error(
        'spec.mode',
        FieldErrorCode.NotSupported,
        `spec.mode: Unsupported value: ${quote(spec['mode'])}: supported values: "Enforce", "Audit"`,
      );
    }
    rules(c, spec['rules']);
    rateLimit(c, spec['rateLimit']);
    dataProtection(c, spec['dataProtection']);
    const ttl = optionalString(c, spec['certificateTTL'], 'spec.certificateTTL', LIMITS.duration);
    // Positive means some non-zero digit (what the CRD's CEL rule checks), not "rounds to 1 ms".
    if (ttl !== undefined && (parseDuration(ttl) === undefined || !/[1-9]/.test(ttl))) {
      c.error(
        'spec.certificateTTL',
        FieldErrorCode.Invalid,
        `spec.certificateTTL: Invalid value: ${quote(ttl)}: must be a positive duration like '30m' or '1h'`,
      );
    }
    const until = optionalString(c, spec['validUntil'], 'spec.validUntil', 64);
    if (until !== undefined && !isRfc3339(until)) {
      c.error(
        'spec.validUntil',
        FieldErrorCode.Invalid,
        `spec.validUntil: Invalid value: ${quote(until)}: must be an RFC 3339 time like '2027-06-30T00:00:00Z'`,
      );
    }
    optionalString(c, spec['description'], 'spec.description', LIMITS.description);
  }
  if (top['status'] !== undefined && !isObject(top['status'])) {
    c.error('status', FieldErrorCode.TypeInvalid, 'status: Invalid value: must be an object');
  }
  if (c.errors.length > 0) return { errors: c.errors, warnings: c.warnings };
  return { policy: doc as ErpIntegrationPolicy, errors: c.errors, warnings: c.warnings };
}

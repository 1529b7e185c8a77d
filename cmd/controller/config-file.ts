/**
 * The controller's config file: the `config.yaml` the Helm chart renders
 * (charts/erpguard/templates/configmap.yaml). Each setting maps onto the flag of the same meaning,
 * so the file and the flags share one validation (flags.ts) and flags still win. An unknown key
 * is an error naming it: a typo must not silently fall back to a default.
 */
import { load } from 'js-yaml';

import { ErpguardError, ErrorCode } from '../../pkg/errors/errors.js';

import type { ControllerFlag, FileValues } from './flags.js';

type Scalar = string | number | boolean;

function invalid(source: string, field: string, message: string): ErpguardError {
  return new ErpguardError(ErrorCode.InvalidConfig, `${source}: ${field}: ${message}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Setting path → flag (and how the value becomes the flag's text). */
const SCALARS: Record<string, ControllerFlag> = {
  namespace: 'namespace',
  trustDomain: 'trust-domain',
  logLevel: 'log-level',
  'ca.defaultTTL': 'ca-default-ttl',
  'ca.maxTTL': 'ca-max-ttl',
  'ca.secretName': 'ca-secret',
  'webhook.certificates': 'webhook-certificates',
  'webhook.secretName': 'webhook-secret',
  'webhook.configurationName': 'webhook-configuration',
  'webhook.serviceName': 'webhook-service',
  'grpc.address': 'controller-address',
  'sidecar.image': 'sidecar-image',
};
const PORTS: Record<string, ControllerFlag> = {
  'webhook.port': 'webhook-address',
  'grpc.port': 'grpc-address',
  'admin.port': 'admin-address',
};
const LISTS: Record<string, ControllerFlag> = {
  'reviewers.groups': 'reviewer-groups',
  'reviewers.users': 'reviewer-users',
};
const JSON_VALUES: Record<string, ControllerFlag> = {
  'sidecar.resources': 'sidecar-resources',
};
/** Read by other parts (the lint's maximum), accepted and ignored here. */
const IGNORED = new Set(['policy.maxCertificateTTL']);
const SECTIONS = new Set(['ca', 'webhook', 'grpc', 'admin', 'sidecar', 'reviewers', 'policy']);

export function parseConfigFile(text: string, source: string): FileValues {
  let doc: unknown;
  try {
    doc = load(text, { maxAliases: 0 });
  } catch (error) {
    throw new ErpguardError(
      ErrorCode.InvalidConfig,
      `${source}: not valid YAML: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  if (doc === undefined || doc === null) return {};
  if (!isObject(doc)) throw invalid(source, '(root)', 'must be a mapping');
  const flat = new Map<string, unknown>();
  for (const [key, value] of Object.entries(doc)) {
    if (SECTIONS.has(key)) {
      if (!isObject(value)) throw invalid(source, key, 'must be a mapping');
      for (const [k, v] of Object.entries(value)) flat.set(`${key}.${k}`, v);
    } else {
      flat.set(key, value);
    }
  }
  const out: FileValues = {};
  for (const [path, value] of flat) {
    if (IGNORED.has(path) || value === null || value === undefined) continue;
    const scalar = SCALARS[path];
    const port = PORTS[path];
    const listFlag = LISTS[path];
    const jsonFlag = JSON_VALUES[path];
    if (scalar !== undefined) {
      if (!isScalar(value)) throw invalid(source, path, 'must be a string');
      out[scalar] = String(value);
    } else if (port !== undefined) {
      if (typeof value !== 'number' || !Number.isInteger(value)) {
        throw invalid(source, path, 'must be a port number');
      }
      out[port] = `0.0.0.0:${value}`;
    } else if (listFlag !== undefined) {
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
        throw invalid(source, path, 'must be a list of strings');
      }
      if (value.some((v) => v.includes(','))) throw invalid(source, path, 'names cannot hold ","');
      out[listFlag] = value.join(',');
    } else if (jsonFlag !== undefined) {
      out[jsonFlag] = JSON.stringify(value);
    } else {
      throw invalid(source, path, 'unknown setting');
    }
  }
  return out;
}

function isScalar(value: unknown): value is Scalar {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean';
}

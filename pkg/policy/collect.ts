/**
 * Turns parsed documents into typed policies, keeping each one's origin and its validation
 * problems. Pure; the file adapter (pkg/files) feeds it.
 */
import type { ErpIntegrationPolicy } from '../api/v1alpha1/index.js';
import { describeOrigin } from './load.js';
import type { SourcedDocument } from './load.js';
import { validatePolicyDocument } from './validate.js';
import type { FieldError } from './validate.js';

export interface LoadedPolicy {
  policy: ErpIntegrationPolicy;
  origin: string;
  warnings: FieldError[];
}

export interface RejectedDocument {
  origin: string;
  /** `namespace/name` when the document had one. */
  name?: string;
  errors: FieldError[];
}

export interface CollectedPolicies {
  policies: LoadedPolicy[];
  rejected: RejectedDocument[];
}

/** `namespace/name`, with the namespace defaulted the way kubectl does. */
export function policyKey(
  policy: Pick<ErpIntegrationPolicy, 'metadata'>,
  defaultNamespace = 'default',
): string {
  return `${policy.metadata.namespace ?? defaultNamespace}/${policy.metadata.name}`;
}

function nameOf(value: unknown): string | undefined {
  const meta = (value as { metadata?: { name?: unknown; namespace?: unknown } } | null)?.metadata;
  if (typeof meta?.name !== 'string') return undefined;
  return `${typeof meta.namespace === 'string' ? meta.namespace : 'default'}/${meta.name}`;
}

export function collectPolicies(documents: readonly SourcedDocument[]): CollectedPolicies {
  const policies: LoadedPolicy[] = [];
  const rejected: RejectedDocument[] = [];
  const seen = new Map<string, string>();
  for (const doc of documents) {
    const origin = describeOrigin(doc);
    const result = validatePolicyDocument(doc.value);
    const name = nameOf(doc.value);
    if (!result.policy) {
      rejected.push({ origin, ...(name ? { name } : {}), errors: result.errors });
      continue;
    }
    const key = policyKey(result.policy);
    const first = seen.get(key);
    if (first !== undefined) {
      rejected.push({
        origin,
        name: key,
        errors: [
          {
            field: 'metadata.name',
            code: 'FieldValueDuplicate',
            message: `metadata.name: Duplicate value: ${key} is already defined in ${first}`,
          },
        ],
      });
      continue;
    }
    seen.set(key, origin);
    policies.push({ policy: result.policy, origin, warnings: result.warnings });
  }
  return { policies, rejected };
}

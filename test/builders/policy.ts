/**
 * Fixture builders for ErpIntegrationPolicy objects, with modifier functions (cert-manager's
 * test/unit/gen style). Every call returns a fresh object, so tests never share mutable fixtures.
 */
import type {
  Approval,
  ErpIntegrationPolicy,
  ErpIntegrationPolicySpec,
  PolicyRule,
} from '../../pkg/api/v1alpha1/index.js';

export type PolicyModifier = (policy: ErpIntegrationPolicy) => void;

export function buildPolicy(...modifiers: PolicyModifier[]): ErpIntegrationPolicy {
  const policy: ErpIntegrationPolicy = {
    apiVersion: 'erpguard.io/v1alpha1',
    kind: 'ErpIntegrationPolicy',
    metadata: { name: 'crm-reads-customers', namespace: 'erp' },
    spec: {
      source: { module: 'crm' },
      destination: { module: 'finance' },
      mode: 'Enforce',
      rules: [
        { methods: ['GET'], paths: ['/api/v1/customers', '/api/v1/customers/{id}'] },
        { grpc: { service: 'erp.finance.v1.Invoices', methods: ['GetInvoice'] } },
      ],
      rateLimit: { requestsPerSecond: 50, burst: 100 },
      dataProtection: { mask: ['$.items[*].iban'], tokenize: ['$.items[*].email'] },
      certificateTTL: '1h',
      validUntil: '2027-06-30T00:00:00Z',
    },
  };
  modifiers.forEach((modify) => modify(policy));
  return policy;
}

export const withName =
  (name: string, namespace = 'erp'): PolicyModifier =>
  (p) => {
    p.metadata.name = name;
    p.metadata.namespace = namespace;
  };

export const withSpec =
  (patch: Partial<ErpIntegrationPolicySpec>): PolicyModifier =>
  (p) => {
    p.spec = { ...p.spec, ...patch };
  };

export const withoutSpecField =
  (field: keyof ErpIntegrationPolicySpec): PolicyModifier =>
  (p) => {
    delete (p.spec as unknown as Record<string, unknown>)[field];
  };

export const withRules =
  (...rules: PolicyRule[]): PolicyModifier =>
  (p) => {
    p.spec.rules = rules;
  };

export const withModules =
  (source: string, destination: string): PolicyModifier =>
  (p) => {
    p.spec.source = { module: source };
    p.spec.destination = { module: destination };
  };

export const withAnnotation =
  (key: string, value: string): PolicyModifier =>
  (p) => {
    p.metadata.annotations = { ...p.metadata.annotations, [key]: value };
  };

export const withApproval = (approval: Approval): PolicyModifier =>
  withAnnotation('erpguard.io/approval', JSON.stringify(approval));

export const withLastAuthor = (user: string): PolicyModifier =>
  withAnnotation('erpguard.io/last-author', user);

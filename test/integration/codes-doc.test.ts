/**
 * docs/reference/codes.md lists every stable code with its meaning (fastify-style: an
 * undocumented code fails CI). The file is generated; this checks it is current and complete.
 */
import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { AdmissionDenial, AdmissionSkip, IntegrationGap } from '../../pkg/admission/codes.js';
import { ReadyReason, VerifiedReason } from '../../pkg/api/v1alpha1/index.js';
import { CaReason } from '../../pkg/ca/errors.js';
import { AuditCode } from '../../pkg/cli/audit-report.js';
import { ErrorCode } from '../../pkg/errors/errors.js';
import { IdentityReason } from '../../pkg/identity/errors.js';
import { DecisionReason, PathRejection } from '../../pkg/policy/decision-types.js';
import { LintCode } from '../../pkg/policy/lint.js';
import { FieldErrorCode } from '../../pkg/policy/validate.js';
import { SidecarCode } from '../../pkg/sidecar/codes.js';

const ALL: Record<string, Record<string, string>> = {
  ErrorCode,
  VerifiedReason,
  ReadyReason,
  FieldErrorCode,
  LintCode,
  DecisionReason,
  PathRejection,
  SidecarCode,
  AdmissionDenial,
  AdmissionSkip,
  IntegrationGap,
  IdentityReason,
  CaReason,
  AuditCode,
};

describe('docs/reference/codes.md', () => {
  const doc = readFileSync('docs/reference/codes.md', 'utf8');

  it.each(Object.entries(ALL))('documents every %s code with a meaning', (_name, codes) => {
    for (const code of Object.values(codes)) {
      const row = new RegExp(`^\\| \`${code}\` \\| (.+) \\|$`, 'm').exec(doc);
      expect(row?.[1]).toBeDefined();
      expect(row?.[1]).not.toBe('—');
    }
  });

  it('is what hack/gen-codes-doc.mjs generates from the sources', () => {
    expect(() =>
      execFileSync('node', ['hack/gen-codes-doc.mjs', '--check'], { stdio: 'pipe' }),
    ).not.toThrow();
  });
});

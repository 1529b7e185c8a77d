#!/usr/bin/env node
// Generates docs/reference/codes.md from the code objects in the sources (each code's doc comment
// is its meaning). `--check` exits 1 when the committed file differs: CI keeps docs and code in step.
import { readFileSync, writeFileSync } from 'node:fs';

const SOURCES = [
  ['Errors (CLI, APIs, logs)', 'pkg/errors/errors.ts', 'ErrorCode'],
  ['Verified condition reasons', 'pkg/api/v1alpha1/conditions.ts', 'VerifiedReason'],
  ['Ready condition reasons', 'pkg/api/v1alpha1/conditions.ts', 'ReadyReason'],
  ['Validation field errors', 'pkg/policy/validate.ts', 'FieldErrorCode'],
  ['Least-privilege lint findings', 'pkg/policy/lint.ts', 'LintCode'],
  ['Call decisions (sidecar, erpguard check)', 'pkg/policy/decision-types.ts', 'DecisionReason'],
  ['Path rejections (InvalidPath sub-codes)', 'pkg/policy/decision-types.ts', 'PathRejection'],
  ['Sidecar responses and audit reasons', 'pkg/sidecar/codes.ts', 'SidecarCode'],
  ['Admission denials', 'pkg/admission/codes.ts', 'AdmissionDenial'],
  ['Admission skips (requests let through unjudged)', 'pkg/admission/codes.ts', 'AdmissionSkip'],
  ['Why a declared integration is not covered', 'pkg/admission/codes.ts', 'IntegrationGap'],
  ['Identity service (gRPC `erpguard-reason` trailer)', 'pkg/identity/errors.ts', 'IdentityReason'],
  ['Certificate authority', 'pkg/ca/errors.ts', 'CaReason'],
  ['Cluster audit findings (erpguard audit)', 'pkg/cli/audit-report.ts', 'AuditCode'],
];

/** Entries of `export const NAME = { ... } as const;` with the doc comment before each key. */
export function codesOf(file, name) {
  const text = readFileSync(file, 'utf8');
  const start = text.indexOf(`export const ${name} = {`);
  if (start < 0) throw new Error(`${file}: no export const ${name}`);
  const body = text.slice(start, text.indexOf('} as const', start));
  const entries = [];
  let comment = '';
  for (const raw of body.split('\n').slice(1)) {
    const line = raw.trim();
    if (line.startsWith('/**') || line.startsWith('*') || line.startsWith('//')) {
      const part = line
        .replace(/^\/\*\*|\*\/$|^\*\/?|^\/\//g, '')
        .replace(/\*\/$/, '')
        .trim();
      if (!line.startsWith('//') || !line.startsWith('// ---'))
        comment = `${comment} ${part}`.trim();
      continue;
    }
    const match = /^([A-Za-z0-9]+):\s*'([A-Za-z0-9]+)',?$/.exec(line);
    if (match) {
      entries.push({ code: match[2], meaning: comment.replace(/\s+/g, ' ') });
      comment = '';
    }
  }
  return entries;
}

export function render() {
  const out = [
    '# Stable codes',
    '',
    'Every reason and error code erpguard emits, in one place. Codes are CamelCase words and never',
    'change meaning; tooling may match on them. This file is generated from the sources by',
    '`node hack/gen-codes-doc.mjs` (a test fails when it is out of date).',
    '',
  ];
  for (const [title, file, name] of SOURCES) {
    out.push(
      `## ${title}`,
      '',
      `\`${name}\` in \`${file}\`.`,
      '',
      '| code | meaning |',
      '|---|---|',
    );
    for (const { code, meaning } of codesOf(file, name))
      out.push(`| \`${code}\` | ${meaning.replace(/\|/g, '\\|') || '—'} |`);
    out.push('');
  }
  return out.join('\n');
}

const target = 'docs/reference/codes.md';
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const text = render();
  if (process.argv.includes('--check')) {
    if (readFileSync(target, 'utf8') !== text) {
      process.stderr.write(`${target} is out of date: run node hack/gen-codes-doc.mjs\n`);
      process.exit(1);
    }
  } else writeFileSync(target, text);
}

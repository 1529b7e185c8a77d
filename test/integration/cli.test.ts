/**
 * The offline CLI against real files: the samples under crds/samples and files written to a
 * temporary directory. Runs the same dispatcher as the binary, with captured output.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import { runCli } from '../../pkg/cli/main.js';
import { specHash } from '../../pkg/policy/hash.js';
import { buildPolicy, withApproval, withLastAuthor, withSpec } from '../builders/policy.js';

const NOW = '2026-12-03T00:00:00Z';

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    now: () => new Date(NOW),
    env: {},
  });
  return { code, stdout, stderr };
}

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'erpguard-cli-'));
  const approved = buildPolicy(withLastAuthor('bob'));
  const approval = {
    by: 'alice',
    groups: ['erp-reviewers'],
    at: '2026-11-01T00:00:00Z',
    specHash: specHash(approved.spec),
  };
  await writeFile(
    join(dir, 'approved.yaml'),
    dump(buildPolicy(withLastAuthor('bob'), withApproval(approval))),
  );
  const voided = buildPolicy(
    withLastAuthor('bob'),
    withApproval(approval),
    withSpec({ rules: [{ methods: ['GET', 'POST'], paths: ['/api/v1/invoices'] }] }),
  );
  voided.metadata.name = 'crm-writes-invoices';
  await writeFile(join(dir, 'voided.yaml'), dump(voided));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('erpguard lint', () => {
  it('passes the valid samples', async () => {
    const result = await cli('lint', 'crds/samples/valid', '--now', NOW);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/policies checked: 0 errors/);
  });

  it('fails every invalid sample, naming file and field, as JSON', async () => {
    const result = await cli('lint', 'crds/samples/invalid', '-o', 'json', '--now', NOW);
    expect(result.code).toBe(1);
    const report = JSON.parse(result.stdout) as {
      errors: number;
      findings: { origin: string; field: string }[];
    };
    const files = new Set(
      report.findings.map((f) => f.origin.replace(/#.*$/, '').replace(/ \(line \d+\)$/, '')),
    );
    expect(files.size).toBeGreaterThanOrEqual(10);
    expect(report.findings.find((f) => f.origin.includes('method-lower-case'))?.field).toBe(
      'spec.rules[0].methods[0]',
    );
  });

  it('reports a YAML syntax error with file and line, and still lints the other files', async () => {
    const bad = join(dir, 'broken', 'x.yaml');
    await rm(join(dir, 'broken'), { recursive: true, force: true });
    await (await import('node:fs/promises')).mkdir(join(dir, 'broken'));
    await writeFile(bad, 'spec:\n  rules: [\n');
    await writeFile(join(dir, 'broken', 'ok.yaml'), dump(buildPolicy()));
    const result = await cli('lint', join(dir, 'broken'), '--now', NOW);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/error: ParseError: .*broken\/x\.yaml:\d+:\d+: /);
    expect(result.stderr).toMatch(/1 policy checked/);
  });

  it('refuses a 50 MB file without reading it', async () => {
    const big = join(dir, 'big.yaml');
    await writeFile(big, Buffer.alloc(50 * 1024 * 1024, 0x61));
    const result = await cli('lint', big);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /InputTooLarge: .*big\.yaml: 52428800 bytes is larger than the limit/,
    );
    await rm(big);
  });

  it('says which path does not exist, in one line, without a stack trace', async () => {
    const result = await cli('lint', join(dir, 'missing.yaml'));
    expect(result.code).toBe(1);
    expect(result.stderr.split('\n')[0]).toBe(
      `error: FileUnreadable: ${join(dir, 'missing.yaml')}: no such file or directory`,
    );
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('erpguard lint on a directory with bad entries', () => {
  it('reports a dangling symlink and a symlink loop, and still lints every other file', async () => {
    const { mkdir, symlink } = await import('node:fs/promises');
    const tree = join(dir, 'links');
    await mkdir(join(tree, 'sub'), { recursive: true });
    await writeFile(join(tree, 'good.yaml'), dump(buildPolicy()));
    await symlink('missing.yaml', join(tree, 'dangling.yaml'));
    await symlink('..', join(tree, 'sub', 'up'));
    const result = await cli('lint', tree, '--now', NOW);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/FileUnreadable: .*dangling\.yaml: no such file or directory/);
    expect(result.stderr).toMatch(/1 policy checked/);
    expect(result.stdout).not.toMatch(/FieldValueDuplicate/);
  });
});

describe('erpguard hash', () => {
  it('prints the same hash as the library for each policy', async () => {
    const result = await cli('hash', join(dir, 'approved.yaml'), '-o', 'json');
    expect(result.code).toBe(0);
    const rows = JSON.parse(result.stdout) as { policy: string; specHash: string }[];
    expect(rows).toEqual([
      expect.objectContaining({
        policy: 'erp/crm-reads-customers',
        specHash: specHash(buildPolicy().spec),
      }),
    ]);
  });
});

describe('erpguard verify', () => {
  it('reports Approved and ApprovalVoided, exiting 1 when any is unverified', async () => {
    const result = await cli('verify', dir, '--now', NOW, '-o', 'json');
    const rows = JSON.parse(result.stdout) as { policy: string; condition: { reason: string } }[];
    expect(Object.fromEntries(rows.map((r) => [r.policy, r.condition.reason]))).toEqual({
      'erp/crm-reads-customers': 'Approved',
      'erp/crm-writes-invoices': 'ApprovalVoided',
    });
    expect(result.code).toBe(1);
  });

  it('honours --reviewers and --now', async () => {
    const other = await cli(
      'verify',
      join(dir, 'approved.yaml'),
      '--reviewers',
      'auditors',
      '--now',
      NOW,
    );
    expect(other.stdout).toMatch(/ApproverNotReviewer/);
    const late = await cli('verify', join(dir, 'approved.yaml'), '--now', '2028-01-01T00:00:00Z');
    expect(late.stdout).toMatch(/Expired/);
    const bad = await cli('verify', dir, '--now', 'tomorrow');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--now "tomorrow" is not a time/);
  });
});

describe('erpguard check', () => {
  const check = (...extra: string[]) =>
    cli('check', '--policies', dir, '--to', 'finance', '--now', NOW, ...extra);

  it('allows a call a verified policy allows, naming policy, rule, masks and rate limit', async () => {
    const result = await check(
      '--from',
      'spiffe://cluster.local/ns/erp/sa/crm',
      '--method',
      'GET',
      '--path',
      '/api/v1/customers/42?expand=1',
    );
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^ALLOWED: crm -> finance GET/);
    expect(result.stdout).toMatch(/policy: +erp\/crm-reads-customers rule 0 \(Enforce\)/);
    expect(result.stdout).toMatch(/masked: +\$\.items\[\*\]\.iban/);
    expect(result.stdout).toMatch(/rate: +50\/s, burst 100/);
  });

  it('denies what no verified policy allows, and says which policy is not enforced and why', async () => {
    const result = await check(
      '--from',
      'crm',
      '-n',
      'erp',
      '--method',
      'POST',
      '--path',
      '/api/v1/invoices',
    );
    expect(result.code).toBe(3);
    expect(result.stdout).toMatch(/^DENIED/);
    expect(result.stdout).toMatch(/note: policy erp\/crm-writes-invoices .* ApprovalVoided/);
  });

  it('denies path tricks with their own reason', async () => {
    const result = await check(
      '--from',
      'crm',
      '-n',
      'erp',
      '--method',
      'GET',
      '--path',
      '/api/v1/customers/%2E%2E/admin',
    );
    expect(result.code).toBe(3);
    expect(result.stdout).toMatch(/reason: +InvalidPath/);
  });

  it('decides gRPC methods', async () => {
    const allowed = await check(
      '--from',
      'crm',
      '-n',
      'erp',
      '--grpc',
      '/erp.finance.v1.Invoices/GetInvoice',
    );
    expect(allowed.code).toBe(0);
    const denied = await check(
      '--from',
      'crm',
      '-n',
      'erp',
      '--grpc',
      '/erp.finance.v1.Invoices/DeleteInvoice',
    );
    expect(denied.code).toBe(3);
  });

  it('rejects a malformed call description as a usage error', async () => {
    const result = await check('--from', 'crm', '--method', 'GET');
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--method M --path P/);
    const spiffe = await check('--from', 'spiffe://x/y', '--method', 'GET', '--path', '/');
    expect(spiffe.stderr).toMatch(/not a workload SPIFFE ID/);
    const foreign = await check(
      '--from',
      'spiffe://evil.example/ns/erp/sa/crm',
      '--method',
      'GET',
      '--path',
      '/api/v1/customers',
    );
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toMatch(/not in trust domain "cluster.local"/);
  });
});

describe('erpguard admit', () => {
  const admit = (manifest: string) =>
    cli(
      'admit',
      '--manifest',
      `examples/deployments/${manifest}.yaml`,
      '--policies',
      'examples/policies',
      '--service-accounts',
      'examples/deployments/service-accounts.yaml',
      '-n',
      'erp',
      '--now',
      NOW,
      '-o',
      'json',
    );

  it.each([
    ['crm', 0, undefined],
    ['bi', 0, undefined],
    ['wms', 3, /IntegrationNotVerified: finance: .*ApprovalVoided/],
    ['impostor', 3, /ServiceAccountModuleMismatch/],
    ['unlabelled', 3, /ModuleLabelMissing/],
    ['host-network', 3, /HostNetwork/],
  ])(
    'judges examples/deployments/%s.yaml with the webhook handlers (exit %d)',
    async (manifest, code, message) => {
      const result = await admit(manifest);
      expect(result.code).toBe(code);
      const [first] = JSON.parse(result.stdout) as {
        response: { response: { allowed: boolean; status?: { message: string } } };
      }[];
      expect(first?.response.response.allowed).toBe(code === 0);
      if (message) expect(first?.response.response.status?.message).toMatch(message);
    },
  );

  it('runs a saved AdmissionReview and injects the sidecar into a module pod', async () => {
    const review = JSON.parse(
      await (
        await import('node:fs/promises')
      ).readFile('test/fixtures/admission/pod-create-replicaset.json', 'utf8'),
    ) as { request: { namespace: string } };
    const file = join(dir, 'review.json');
    await writeFile(file, JSON.stringify(review));
    const result = await cli(
      'admit',
      '--review',
      file,
      '--policies',
      'examples/policies',
      '-n',
      review.request.namespace,
      '--now',
      NOW,
      '-o',
      'json',
    );
    const [first] = JSON.parse(result.stdout) as {
      patchedObject?: { spec: { initContainers?: { name: string; restartPolicy?: string }[] } };
    }[];
    expect(first?.patchedObject?.spec.initContainers?.[0]).toMatchObject({
      name: 'erpguard-proxy',
      restartPolicy: 'Always',
    });
  });

  it('refuses a review that is not an AdmissionReview, naming the field', async () => {
    const file = join(dir, 'not-a-review.json');
    await writeFile(file, JSON.stringify({ kind: 'Pod' }));
    const result = await cli('admit', '--review', file, '--policies', 'examples/policies');
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^error: InvalidDocument: /);
  });
});

describe('erpguard', () => {
  it('prints help for every command and rejects unknown ones', async () => {
    for (const command of ['lint', 'hash', 'verify', 'check', 'admit']) {
      const result = await cli(command, '--help');
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`erpguard ${command}`);
    }
    expect((await cli('frobnicate')).code).toBe(2);
    const flag = await cli('lint', '--bogus');
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/^error: InvalidArgument: Unknown option '--bogus'/);
  });
});

import { afterEach, describe, expect, it } from '@jest/globals';
import { cp, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watchPolicyDirectory } from './policy-directory.js';
import type { PolicyDirectoryState, PolicyDirectoryWatcher } from './policy-directory.js';

const reviewers = { groups: ['erp-reviewers'] };
const now = () => new Date('2026-12-03T00:00:00Z');
let watcher: PolicyDirectoryWatcher | undefined;
let dir = '';

afterEach(async () => {
  watcher?.close();
  await rm(dir, { recursive: true, force: true });
});

function eventually(predicate: () => boolean, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 5_000;
    const poll = (): void => {
      if (predicate()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 10);
    };
    poll();
  });
}

describe('watchPolicyDirectory', () => {
  it('loads and verifies the example policies, then follows an edit that voids an approval', async () => {
    dir = await mkdtemp(join(tmpdir(), 'erpguard-policies-'));
    await cp('examples/policies', dir, { recursive: true });
    const states: PolicyDirectoryState[] = [];
    watcher = await watchPolicyDirectory({ dir, reviewers, now, onChange: (s) => states.push(s) });
    const first = watcher.current();
    expect(first.version).toBe(1);
    expect(first.verified.map((p) => p.metadata.name).sort()).toEqual([
      'bi-exports-ledger',
      'bi-reads-stock',
      'crm-checks-stock',
      'crm-reads-customers',
    ]);
    const file = join(dir, 'crm-reads-customers.yaml');
    const text = await readFile(file, 'utf8');
    // Write-then-rename, as editors and the demo do, so no half-written file is ever read.
    await writeFile(`${file}.tmp`, text.replace('requestsPerSecond: 50', 'requestsPerSecond: 60'));
    await rename(`${file}.tmp`, file);
    const reason = (): string | undefined =>
      watcher?.current().policies.find((p) => p.key === 'erp/crm-reads-customers')?.verification
        .condition.reason;
    await eventually(() => reason() === 'ApprovalVoided', 'the approval to be voided');
    expect(states.length).toBeGreaterThanOrEqual(2);
    expect(watcher.current().verified.map((p) => p.metadata.name)).not.toContain(
      'crm-reads-customers',
    );
  });

  it('never keeps a stale approval because some other entry became unreadable (fail closed)', async () => {
    dir = await mkdtemp(join(tmpdir(), 'erpguard-policies-'));
    await cp('examples/policies', dir, { recursive: true });
    await symlink('missing.yaml', join(dir, 'dangling.yaml'));
    const states: PolicyDirectoryState[] = [];
    watcher = await watchPolicyDirectory({ dir, reviewers, now, onChange: (s) => states.push(s) });
    expect(watcher.current().problems.map((p) => p.code)).toEqual(['FileUnreadable']);
    expect(watcher.current().verified.map((p) => p.metadata.name)).toContain('crm-reads-customers');
    await rm(join(dir, 'crm-reads-customers.yaml'));
    await eventually(
      () =>
        !(
          watcher?.current().verified.some((p) => p.metadata.name === 'crm-reads-customers') ?? true
        ),
      'the deleted policy to stop being enforced',
    );
  });

  it('reports a broken file and keeps the others; publishes nothing when nothing changed', async () => {
    dir = await mkdtemp(join(tmpdir(), 'erpguard-policies-'));
    await cp('examples/policies/crm-checks-stock.yaml', join(dir, 'a.yaml'));
    await writeFile(join(dir, 'b.yaml'), 'spec: [unclosed\n');
    const states: PolicyDirectoryState[] = [];
    watcher = await watchPolicyDirectory({ dir, reviewers, now, onChange: (s) => states.push(s) });
    expect(watcher.current().verified).toHaveLength(1);
    expect(watcher.current().problems[0]?.code).toBe('ParseError');
    await watcher.refresh();
    expect(states).toHaveLength(1);
  });
});

/**
 * The demo scenario as a test: the whole local system (CA, identity and policy service, four
 * module apps behind real sidecars) and every scripted step. No timing assertions.
 */
import { afterAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDemo } from '../../cmd/erpguard/demo.js';

let dir = '';
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('erpguard demo', () => {
  it('runs every step of the scenario as expected and verifies the audit chains', async () => {
    dir = await mkdtemp(join(tmpdir(), 'erpguard-demo-'));
    let stdout = '';
    const code = await runDemo(['--dir', dir], {
      stdout: (t) => (stdout += t),
      stderr: (t) => (stdout += t),
      now: () => new Date(),
      env: {},
    });
    const failures = stdout.split('\n').filter((line) => line.includes('FAIL'));
    expect(failures).toEqual([]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/All 11 checks \(9 steps\) behaved as expected\./);
    expect(stdout).toMatch(/"iban":"\*\*\*"/);
    expect(stdout).toMatch(/403 NoMatchingRule/);
    expect(stdout).toMatch(/ApprovalVoided/);
    expect(stdout).toMatch(/429 Too Many Requests/);
    expect(stdout).toMatch(/reason=AuditWouldDeny/);
    expect(stdout).toMatch(/403 IdentityRevoked/);
    expect(stdout).toMatch(/every hash chain verified/);
  }, 120_000);
});

import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  AuditLog,
  auditChainFiles,
  GENESIS_HASH,
  rotatedFiles,
  verifyAuditChain,
  type AuditRecord,
} from './audit-log.js';

function record(i: number, extra: Partial<AuditRecord> = {}): AuditRecord {
  return {
    requestId: `req-${i}`,
    direction: 'inbound',
    caller: 'spiffe://cluster.local/ns/erp/sa/crm',
    callerModule: 'crm',
    destination: 'finance',
    method: 'GET',
    path: `/api/v1/customers/${i}`,
    protocol: 'http/1.1',
    decision: 'allow',
    reason: 'Allowed',
    policy: 'erp/crm-reads',
    rule: 0,
    status: 200,
    durationMs: 1.5,
    bytesIn: 0,
    bytesOut: 10,
    masked: 0,
    tokenized: 0,
    snapshotVersion: 1,
    ...extra,
  };
}

describe('AuditLog', () => {
  let dir: string;
  let path: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'erpguard-audit-'));
    path = join(dir, 'sub', 'audit.log');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes one hash-chained JSON line per record and acknowledges after sync', async () => {
    const log = await AuditLog.open({ path, clock: () => Date.parse('2026-01-01T00:00:00Z') });
    for (let i = 1; i <= 5; i++) expect(log.append(record(i))).toBe(true);
    await log.flush();
    expect(log.acknowledged).toBe(5);
    await log.close();
    const lines = (await readFile(path, 'utf8')).trimEnd().split('\n');
    expect(lines).toHaveLength(5);
    const first = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
    expect(first).toMatchObject({
      v: 1,
      seq: 1,
      time: '2026-01-01T00:00:00.000Z',
      prev: GENESIS_HASH,
      path: '/api/v1/customers/1',
    });
    expect(Object.keys(first).at(-1)).toBe('prev');
    const result = await verifyAuditChain(path);
    expect(result).toMatchObject({
      ok: true,
      records: 5,
      firstSeq: 1,
      lastSeq: 5,
      startsAtGenesis: true,
    });
    expect(result.head).toBe(log.chainHead.hash);
  });

  it('continues the chain after a restart', async () => {
    const a = await AuditLog.open({ path });
    a.append(record(1));
    a.append(record(2));
    await a.close();
    const b = await AuditLog.open({ path });
    expect(b.chainHead.seq).toBe(2);
    b.append(record(3));
    await b.close();
    expect(await verifyAuditChain(path)).toMatchObject({ ok: true, records: 3, lastSeq: 3 });
  });

  it('cuts a torn (never acknowledged) last line on open and continues the chain', async () => {
    const a = await AuditLog.open({ path });
    a.append(record(1));
    await a.close();
    await appendFile(path, '{"v":1,"seq":2,"time":"x","requestId":"torn');
    expect(await verifyAuditChain(path)).toMatchObject({
      ok: false,
      firstBreak: { reason: 'Unparsable' },
    });
    const b = await AuditLog.open({ path });
    b.append(record(2));
    await b.close();
    expect(await verifyAuditChain(path)).toMatchObject({ ok: true, records: 2 });
  });

  it('rotates, and the chain continues across files (also after a restart right after rotation)', async () => {
    const a = await AuditLog.open({ path, maxFileBytes: 2000, maxBatch: 1 });
    for (let i = 1; i <= 20; i++) {
      a.append(record(i));
      await a.flush();
    }
    await a.close();
    const rotated = await rotatedFiles(path);
    expect(rotated.length).toBeGreaterThan(2);
    const b = await AuditLog.open({ path, maxFileBytes: 2000 });
    b.append(record(21));
    await b.close();
    const files = await auditChainFiles(path);
    expect(files.at(-1)).toBe(path);
    expect(await verifyAuditChain(files)).toMatchObject({
      ok: true,
      records: 21,
      startsAtGenesis: true,
      lastSeq: 21,
    });
    const later = await verifyAuditChain(files.slice(1));
    expect(later.ok).toBe(true);
    expect(later.startsAtGenesis).toBe(false);
    // A missing file in the middle is a break.
    const gap = await verifyAuditChain([files[0] ?? '', ...files.slice(2)]);
    expect(gap.firstBreak).toMatchObject({ reason: 'HashMismatch', line: 1 });
  });

  it.each([
    [
      'a changed field',
      (lines: string[]) => (lines[2] = (lines[2] ?? '').replace('"status":200', '"status":201')),
      4,
      'HashMismatch',
    ],
    ['a removed line', (lines: string[]) => lines.splice(1, 1), 2, 'HashMismatch'],
    [
      'a reordered pair',
      (lines: string[]) => lines.splice(1, 2, lines[2] ?? '', lines[1] ?? ''),
      2,
      'HashMismatch',
    ],
    ['a garbage line', (lines: string[]) => (lines[3] = 'not json'), 4, 'Unparsable'],
  ])('verification reports the first break after %s', async (_name, tamper, line, reason) => {
    const log = await AuditLog.open({ path });
    for (let i = 1; i <= 6; i++) log.append(record(i));
    await log.close();
    const lines = (await readFile(path, 'utf8')).split('\n');
    tamper(lines);
    const bad = join(dir, 'bad.log');
    await writeFile(bad, lines.join('\n'));
    expect((await verifyAuditChain(bad)).firstBreak).toMatchObject({ line, reason });
  });

  it('recomputing the hashes after a deletion still leaves a seq gap', async () => {
    const log = await AuditLog.open({ path });
    for (let i = 1; i <= 3; i++) log.append(record(i));
    await log.close();
    const [l1, , l3] = (await readFile(path, 'utf8')).trimEnd().split('\n');
    const { createHash } = await import('node:crypto');
    const fixed = (l3 ?? '').replace(
      /"prev":"[0-9a-f]+"/,
      `"prev":"${createHash('sha256')
        .update(l1 ?? '')
        .digest('hex')}"`,
    );
    const bad = join(dir, 'bad.log');
    await writeFile(bad, `${l1}\n${fixed}\n`);
    expect((await verifyAuditChain(bad)).firstBreak).toMatchObject({ reason: 'SeqGap', line: 2 });
  });

  it('stops accepting when the queue is full', async () => {
    const log = await AuditLog.open({ path, maxQueue: 3, sync: false });
    const accepted = Array.from({ length: 10 }, (_, i) => log.append(record(i)));
    expect(accepted.filter(Boolean).length).toBeLessThan(10);
    expect(log.accepting()).toBe(false);
    await log.flush();
    expect(log.accepting()).toBe(true);
    await log.close();
    expect((await verifyAuditChain(path)).ok).toBe(true);
  });

  (existsSync('/dev/full') ? it : it.skip)(
    'refuses new records while the sink fails (ENOSPC)',
    async () => {
      const log = await AuditLog.open({ path: '/dev/full', sync: false });
      log.append(record(1));
      await new Promise((r) => setTimeout(r, 100));
      expect(log.accepting()).toBe(false);
      expect(log.healthy).toBe(false);
      expect(log.append(record(2))).toBe(false);
      await log.close();
    },
  );
});

/**
 * `erpguard demo`: starts the local system (cmd/local) and runs a scripted scenario of real calls
 * through the sidecars, printing each step, what happened and why. Exit 0 only if every step
 * behaved as expected.
 */
import { createWriteStream } from 'node:fs';
import { cp, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { load } from 'js-yaml';
import { admitOffline } from '../../pkg/admission/offline.js';
import type { AdmissionConfig, Snapshot } from '../../pkg/admission/types.js';
import { ANNOTATION_APPROVAL } from '../../pkg/api/v1alpha1/index.js';
import type { ErpIntegrationPolicy } from '../../pkg/api/v1alpha1/index.js';
import { reviewFor } from '../../pkg/cli/admit-command.js';
import { ExitCode, formatTable } from '../../pkg/cli/io.js';
import type { CliIo } from '../../pkg/cli/io.js';
import { parseFlags, stringFlag } from '../../pkg/cli/args.js';
import type { SampleModule } from '../../pkg/demo/sample-apps.js';
import { specHash } from '../../pkg/policy/hash.js';
import { auditChainFiles, verifyAuditChain } from '../../pkg/sidecar/audit-log.js';
import { createLogger } from '../../pkg/telemetry/logger.js';
import { startLocalSystem } from '../local/system.js';
import type { LocalSystem } from '../local/system.js';

/** The repository's examples/, found from this file (works from src and from dist/). */
function examplesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'examples', 'policies'))) {
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error('examples/policies not found next to the erpguard installation');
    dir = parent;
  }
  return join(dir, 'examples');
}

const MODULES: readonly SampleModule[] = ['finance', 'crm', 'wms', 'bi'];
const REVIEWERS = { groups: ['erp-reviewers'] };

interface CallResult {
  status: number;
  body: string;
  json: Record<string, unknown> | undefined;
  error?: string;
}

/** One call from `from`'s app through its outbound proxy (absolute-form, as HTTP_PROXY clients do). */
function call(
  system: LocalSystem,
  from: SampleModule,
  method: string,
  url: string,
): Promise<CallResult> {
  const proxy = new URL(system.modules.get(from)?.proxyUrl ?? '');
  return new Promise((done) => {
    const req = request(
      {
        host: proxy.hostname,
        port: proxy.port,
        method,
        path: url,
        headers: { host: new URL(url).host, 'content-type': 'application/json' },
        agent: false,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          let json: Record<string, unknown> | undefined;
          try {
            json = JSON.parse(body) as Record<string, unknown>;
          } catch {
            json = undefined;
          }
          done({ status: res.statusCode ?? 0, body, json });
        });
      },
    );
    req.on('error', (error) =>
      done({ status: 0, body: '', json: undefined, error: error.message }),
    );
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end(method === 'POST' ? JSON.stringify({ demo: true }) : undefined);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(
  what: () => Promise<boolean>,
  timeoutMs: number,
): Promise<number | undefined> {
  const start = Date.now();
  while (Date.now() - start < timeoutMs) {
    if (await what()) return Date.now() - start;
    await sleep(25);
  }
  return undefined;
}

/** Rewrites a policy file the way an editor does: a new file renamed over the old one. */
async function editFile(path: string, edit: (text: string) => string): Promise<void> {
  const text = await readFile(path, 'utf8');
  await writeFile(`${path}.tmp`, edit(text));
  await rename(`${path}.tmp`, path);
}

interface Tally {
  byDecision: Map<string, number>;
  masked: number;
  tokenized: number;
  rateLimited: number;
  rotations: number;
}

export async function runDemo(args: readonly string[], io: CliIo): Promise<ExitCode> {
  const parsed = parseFlags(
    args,
    { 'keep-running': { type: 'boolean' }, dir: { type: 'string' } },
    false,
  );
  const keepRunning = parsed.values['keep-running'] === true;
  const workDir = resolve(stringFlag(parsed, 'dir') ?? '.erpguard/demo');
  const out = (text: string): void => io.stdout(`${text}\n`);
  const tally: Tally = {
    byDecision: new Map(),
    masked: 0,
    tokenized: 0,
    rateLimited: 0,
    rotations: 0,
  };
  const count = (r: CallResult): CallResult => {
    const key =
      r.status === 200 || r.status === 201
        ? 'allowed'
        : r.status === 429
          ? 'rate-limited'
          : r.status === 403
            ? 'denied'
            : `status ${r.status}`;
    tally.byDecision.set(key, (tally.byDecision.get(key) ?? 0) + 1);
    return r;
  };
  const results: { step: string; ok: boolean; detail: string }[] = [];
  const step = (name: string, ok: boolean, detail: string): void => {
    results.push({ step: name, ok, detail });
    out(`   ${ok ? 'OK  ' : 'FAIL'} ${detail}`);
  };

  out(
    'erpguard demo: a sample ERP system (finance, crm, wms, bi) protected on this machine, no cluster.',
  );
  await rm(workDir, { recursive: true, force: true });
  const policiesDir = join(workDir, 'policies');
  await cp(join(examplesDir(), 'policies'), policiesDir, { recursive: true });
  out(`Starting (work directory ${workDir}):`);
  await mkdir(join(workDir, 'logs'), { recursive: true });
  const logFile = join(workDir, 'logs', 'erpguard.log');
  const logStream = createWriteStream(logFile, { flags: 'a' });
  const logger = createLogger('local', {
    level: 'info',
    sink: (line) => logStream.write(`${line}\n`),
  });
  out(` - component logs (JSON lines): ${logFile}`);
  const system = await startLocalSystem({
    workDir,
    policiesDir,
    modules: MODULES,
    reviewers: REVIEWERS,
    logger,
    progress: (m) => out(` - ${m}`),
  });
  let stopping = false;
  try {
    const finance = 'http://finance.erp.svc';
    const wms = 'http://wms.erp.svc';

    out(
      '\n1. crm reads a customer from finance (policy crm-reads-customers: GET, IBAN masked, e-mail tokenized)',
    );
    const customer = count(await call(system, 'crm', 'GET', `${finance}/api/v1/customers/1001`));
    const iban = customer.json?.['iban'];
    const email = customer.json?.['email'];
    if (iban === '***') tally.masked += 1;
    if (typeof email === 'string' && email.startsWith('tok_')) tally.tokenized += 1;
    out(`   crm received: ${customer.body}`);
    step(
      'crm reads a customer',
      customer.status === 200 &&
        iban === '***' &&
        typeof email === 'string' &&
        email.startsWith('tok_'),
      `${customer.status}: iban ${JSON.stringify(iban)} (masked), email ${JSON.stringify(email)} (tokenized: a keyed HMAC token, stable per value within this run)`,
    );

    out('\n2. crm tries to write an invoice in finance');
    const write = count(await call(system, 'crm', 'POST', `${finance}/api/v1/invoices`));
    step(
      'crm writes an invoice',
      write.status === 403 && write.json?.['code'] === 'NoMatchingRule',
      `${write.status} ${String(write.json?.['code'])}: ${String(write.json?.['reason'])}`,
    );
    out('   to allow it, a reviewed policy for crm -> finance would need the rule:');
    out('     - methods: [POST]\n       paths: [/api/v1/invoices]');

    out(
      '\n3. wms books a goods receipt in finance (policy wms-books-goods-receipts was edited after approval)',
    );
    const receipt = count(await call(system, 'wms', 'POST', `${finance}/api/v1/goods-receipts`));
    const voided = system.policies
      .current()
      .policies.find((p) => p.key === 'erp/wms-books-goods-receipts');
    step(
      'wms under a void approval',
      receipt.status === 403 && voided?.verification.condition.reason === 'ApprovalVoided',
      `${receipt.status} ${String(receipt.json?.['code'])}: the sidecar has no verified policy; the controller says ${voided?.verification.condition.reason ?? '?'}: ${voided?.verification.condition.message ?? ''}`,
    );

    out('\n4. bi pulls the ledger export 10 times at once (limit: 2/s, burst 3)');
    const burst = (
      await Promise.all(
        Array.from({ length: 10 }, () =>
          call(system, 'bi', 'GET', `${finance}/api/v1/exports/ledger`),
        ),
      )
    ).map(count);
    const limited = burst.filter((r) => r.status === 429).length;
    tally.rateLimited += limited;
    step(
      'bi rate limited',
      limited >= 5 && burst.some((r) => r.status === 200),
      `${burst.length - limited} served, ${limited} answered 429 Too Many Requests (Retry-After given)`,
    );

    out(
      '\n5. bi reads stock movements from wms: policy bi-reads-stock is in Audit mode and has no rule for this path',
    );
    const movements = count(await call(system, 'bi', 'GET', `${wms}/api/v1/stock-movements`));
    await system.modules.get('wms')?.sidecar.flushAudit();
    const wmsAudit = await readFile(system.modules.get('wms')?.auditLogPath ?? '', 'utf8');
    const wouldDeny = wmsAudit
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((r) => r['reason'] === 'AuditWouldDeny' && r['path'] === '/api/v1/stock-movements');
    step(
      'Audit mode',
      movements.status === 200 && wouldDeny !== undefined,
      `${movements.status}: allowed; audit record: decision=${String(wouldDeny?.['decision'])} reason=${String(wouldDeny?.['reason'])} wouldBe=${String(wouldDeny?.['wouldBe'])}`,
    );

    out(
      '\n6. someone edits crm-reads-customers (rate limit 50 -> 60): the approval is void until re-approved',
    );
    const file = join(policiesDir, 'crm-reads-customers.yaml');
    const readCustomer = async (): Promise<number> =>
      count(await call(system, 'crm', 'GET', `${finance}/api/v1/customers/1002`)).status;
    await editFile(file, (t) => t.replace('requestsPerSecond: 50', 'requestsPerSecond: 60'));
    const deniedAfter = await waitFor(async () => (await readCustomer()) === 403, 5_000);
    const edited = system.policies
      .current()
      .policies.find((p) => p.key === 'erp/crm-reads-customers');
    step(
      'edit voids approval',
      deniedAfter !== undefined && edited?.verification.condition.reason === 'ApprovalVoided',
      `crm's reads denied ${deniedAfter ?? '?'} ms after the edit (Verified=False, ${edited?.verification.condition.reason ?? '?'})`,
    );
    out('   alice (erp-reviewers) reviews the change and approves the new spec hash');
    const spec = (load(await readFile(file, 'utf8')) as ErpIntegrationPolicy).spec;
    const approval = {
      by: 'alice@corp.example',
      groups: ['erp-reviewers'],
      at: new Date().toISOString(),
      specHash: specHash(spec),
    };
    await editFile(file, (t) =>
      t.replace(
        new RegExp(`${ANNOTATION_APPROVAL}: .*`),
        `${ANNOTATION_APPROVAL}: '${JSON.stringify(approval)}'`,
      ),
    );
    const allowedAfter = await waitFor(async () => (await readCustomer()) === 200, 5_000);
    step(
      're-approval restores',
      allowedAfter !== undefined,
      `crm's reads allowed again ${allowedAfter ?? '?'} ms after re-approval (spec ${approval.specHash.slice(0, 19)}...)`,
    );

    out("\n7. bi's identity is revoked (spiffe://cluster.local/ns/erp/sa/bi)");
    const before = count(await call(system, 'bi', 'GET', `${wms}/api/v1/stock/SKU-4711`));
    system.revoke('bi', 'demo: credentials suspected leaked');
    const refusedAfter = await waitFor(
      async () =>
        count(await call(system, 'bi', 'GET', `${wms}/api/v1/stock/SKU-4711`)).status === 403,
      5_000,
    );
    const after = await call(system, 'bi', 'GET', `${wms}/api/v1/stock/SKU-4711`);
    step(
      'revocation',
      before.status === 200 && refusedAfter !== undefined,
      `before: ${before.status}; refused ${refusedAfter ?? '?'} ms after revocation: ${after.status} ${String(after.json?.['code'])}`,
    );

    out(
      '\n8. certificate rotation of crm and wms while crm keeps calling wms (3 callers, ~60 calls/s: under the 100/s limit)',
    );
    let inFlight = true;
    const loopResults: number[] = [];
    const loops = Array.from({ length: 3 }, async () => {
      while (inFlight) {
        loopResults.push(
          count(await call(system, 'crm', 'GET', `${wms}/api/v1/stock/SKU-0815`)).status,
        );
        await sleep(50);
      }
    });
    await sleep(500);
    const crmBefore = system.modules.get('crm')?.identity.current()?.notAfter.toISOString();
    await system.modules.get('crm')?.identity.renewNow();
    await sleep(200);
    await system.modules.get('wms')?.identity.renewNow();
    tally.rotations += 2;
    await sleep(500);
    inFlight = false;
    await Promise.all(loops);
    const failed = loopResults.filter((s) => s !== 200).length;
    const crmAfter = system.modules.get('crm')?.identity.current()?.notAfter.toISOString();
    step(
      'rotation without failures',
      failed === 0 && loopResults.length > 0 && crmBefore !== crmAfter,
      `${loopResults.length} calls during 2 rotations, ${failed} failed; crm's certificate now valid until ${crmAfter ?? '?'}`,
    );

    out('\n9. the admission gate judges examples/deployments (same handler as `erpguard admit`)');
    const gate = await admissionTable(system);
    out(gate.table.replace(/^/gm, '   '));
    step('admission gate', gate.ok, gate.summary);

    out('\nSummary');
    const chains = await Promise.all(
      [...system.modules.values()].map(async (m) => {
        await m.sidecar.flushAudit();
        const v = await verifyAuditChain(await auditChainFiles(m.auditLogPath));
        return {
          module: m.module,
          ok: v.ok && v.startsAtGenesis,
          records: v.records,
          path: m.auditLogPath,
        };
      }),
    );
    out(
      formatTable(
        ['CALLS', 'COUNT'],
        [...tally.byDecision.entries()].map(([k, v]) => [k, String(v)]),
      ).replace(/^/gm, '   '),
    );
    out(
      `   masked fields: ${tally.masked} IBAN(s) seen masked, ${tally.tokenized} e-mail(s) tokenized (per response; see erpguard_masked_fields_total)`,
    );
    out(`   rate-limited: ${tally.rateLimited}; certificate rotations: ${tally.rotations}`);
    out(
      formatTable(
        ['AUDIT LOG', 'RECORDS', 'CHAIN'],
        chains.map((c) => [c.path, String(c.records), c.ok ? 'verified' : 'BROKEN']),
      ).replace(/^/gm, '   '),
    );
    step(
      'audit chains',
      chains.every((c) => c.ok),
      `${chains.reduce((n, c) => n + c.records, 0)} audit records, every hash chain verified`,
    );
    if (keepRunning) {
      for (const m of system.modules.values()) {
        out(`   metrics of ${m.module}: http://127.0.0.1:${m.sidecar.adminPort}/metrics`);
      }
    } else {
      out(
        '   metrics: each sidecar serves /metrics on its admin port (run with --keep-running to scrape them)',
      );
    }

    const failedSteps = results.filter((r) => !r.ok);
    out(
      failedSteps.length === 0
        ? `\nAll ${results.length} checks (9 steps) behaved as expected.`
        : `\n${failedSteps.length} of ${results.length} checks did NOT behave as expected: ${failedSteps.map((f) => f.step).join(', ')}`,
    );
    if (keepRunning) {
      const crm = system.modules.get('crm');
      out(
        `\nStill running (Ctrl-C to stop). Try a call through crm's sidecar:\n  curl -x ${crm?.proxyUrl ?? ''} ${finance}/api/v1/customers/1001`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      out('Stopping: sidecars, apps, identity service and CA are shut down.');
    }
    return failedSteps.length === 0 ? ExitCode.Ok : ExitCode.Findings;
  } finally {
    if (!stopping) {
      stopping = true;
      await system.close();
      await new Promise<void>((done) => logStream.end(done));
    }
  }
}

async function admissionTable(
  system: LocalSystem,
): Promise<{ table: string; ok: boolean; summary: string }> {
  const expected: Record<string, boolean> = {
    crm: true,
    bi: true,
    wms: false,
    impostor: false,
    unlabelled: false,
    'host-network': false,
  };
  const serviceAccounts = (
    await readFile(join(examplesDir(), 'deployments', 'service-accounts.yaml'), 'utf8')
  )
    .split(/^---$/m)
    .map(
      (doc) =>
        load(doc) as {
          metadata: { name: string; namespace: string; labels: Record<string, string> };
        },
    )
    .map((sa) => ({
      namespace: sa.metadata.namespace,
      name: sa.metadata.name,
      module: sa.metadata.labels['erpguard.io/module'] ?? '',
    }));
  const snapshot: Snapshot = {
    policies: system.policies.current().policies.map((p) => p.policy),
    serviceAccounts,
    namespaces: [{ name: 'erp', labels: { 'erpguard.io/enforce': 'true' } }],
  };
  const config: AdmissionConfig = {
    reviewers: REVIEWERS,
    ownNamespace: 'erpguard-system',
    sidecar: { image: 'ghcr.io/erpguard/erpguard:0.1.0' },
    trustDomain: 'cluster.local',
    controllerAddress: 'erpguard.erpguard-system.svc:15012',
    now: new Date(),
  };
  const rows: string[][] = [];
  let ok = true;
  for (const [name, admit] of Object.entries(expected)) {
    const manifest = load(
      await readFile(join(examplesDir(), 'deployments', `${name}.yaml`), 'utf8'),
    ) as Record<string, unknown>;
    const result = admitOffline(
      reviewFor(
        manifest,
        'erp',
        { username: 'ci-deployer', groups: ['system:authenticated'] },
        `demo-${name}`,
      ),
      snapshot,
      config,
    );
    const finding = result.validation.findings[0] ?? result.mutation.findings[0];
    ok &&= result.response.allowed === admit;
    rows.push([
      `${name}.yaml`,
      result.response.allowed ? 'admitted' : 'REJECTED',
      result.response.allowed ? '-' : (finding?.code ?? '?'),
      result.response.allowed ? '' : (finding?.message ?? ''),
    ]);
  }
  return {
    table: formatTable(['MANIFEST', 'VERDICT', 'CODE', 'WHY'], rows).trimEnd(),
    ok,
    summary: `${rows.filter((r) => r[1] === 'admitted').length} admitted, ${rows.filter((r) => r[1] === 'REJECTED').length} rejected, each as expected: ${ok}`,
  };
}

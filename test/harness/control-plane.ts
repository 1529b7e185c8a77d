/**
 * envtest-style control plane for erpguard's integration/e2e tests: a real etcd + kube-apiserver
 * (no kubelet, no controllers) on free loopback ports, a throw-away PKI made with `openssl`, and
 * version-matched `kubectl` / `helm` from hack/build-tools.sh.
 *
 * Binaries: ERPGUARD_TOOLS_BIN (a directory) if set, otherwise the output of hack/build-tools.sh
 * (a no-op when its cache is warm; a cold build takes tens of minutes). envtest's
 * TEST_ASSET_ETCD / TEST_ASSET_KUBE_APISERVER / TEST_ASSET_KUBECTL override single binaries.
 *
 * E2E_USE_EXISTING_CLUSTER=1 (+ KUBECONFIG) uses an existing cluster instead; user credentials are
 * then issued through the CertificateSigningRequest API (signer kubernetes.io/kube-apiserver-client).
 *
 * What does not exist here (no kube-controller-manager): `default` ServiceAccounts, the token
 * controller, namespace deletion, garbage collection, Deployment -> Pod. TokenRequest
 * (`kubectl create token`) and TokenReview do work.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CommandResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface RunOptions {
  /** Written to the command's stdin. */
  input?: string;
  /** Kubeconfig to use instead of the admin one (e.g. from {@link ControlPlane.userKubeconfig}). */
  kubeconfig?: string;
  /** Kill the command after this many milliseconds (default 120 000). */
  timeoutMs?: number;
}

export interface UserCredentials {
  name: string;
  groups: readonly string[];
  certPath: string;
  keyPath: string;
  kubeconfigPath: string;
}

export interface ControlPlaneOptions {
  /** Directory with etcd, kube-apiserver, kubectl, helm (default: ERPGUARD_TOOLS_BIN or hack/build-tools.sh). */
  binDir?: string;
  /** Deadline for etcd + kube-apiserver to become ready (default 90 000 ms). */
  readyTimeoutMs?: number;
  /** Extra kube-apiserver flags, appended last (later flags win). */
  extraApiServerFlags?: readonly string[];
  /** Keep the temp dir (PKI, logs, etcd data) after stop(); also ERPGUARD_KEEP_CLUSTER_DIR=1. */
  keepTempDir?: boolean;
  /** Progress messages (default: stderr). */
  log?: (message: string) => void;
}

export interface ControlPlane {
  /** True when E2E_USE_EXISTING_CLUSTER=1 (nothing was started). */
  readonly external: boolean;
  readonly kubeconfigPath: string;
  readonly serverUrl: string;
  readonly binDir: string;
  /** Temp dir holding PKI, kubeconfigs and (local mode) logs: etcd.log, kube-apiserver.log. */
  readonly tempDir: string;
  /** PEM of the CA that signed the apiserver serving cert (local mode) or of the cluster. */
  readonly caCertPem: string;
  /** Milliseconds from spawning etcd to kube-apiserver /readyz = ok (0 in external mode). */
  readonly startupMs: number;
  kubectl(args: readonly string[], opts?: RunOptions): Promise<CommandResult>;
  helm(args: readonly string[], opts?: RunOptions): Promise<CommandResult>;
  /** Issues a client certificate (CN=name, O=groups) and writes a kubeconfig for it. */
  createUserCredentials(name: string, groups?: readonly string[]): Promise<UserCredentials>;
  /** Kubeconfig path of a user made by createUserCredentials (throws for unknown users). */
  userKubeconfig(name: string): string;
  stop(): Promise<void>;
}

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9:._@-]*$/;
const DEFAULT_RUN_TIMEOUT_MS = 120_000;

// ---------------------------------------------------------------------------------------------
// process helpers

function run(
  file: string,
  args: readonly string[],
  opts: {
    input?: string | undefined;
    env?: NodeJS.ProcessEnv;
    timeoutMs?: number | undefined;
    cwd?: string;
  } = {},
): Promise<CommandResult> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      file,
      [...args],
      {
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        timeout: opts.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS,
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        if (error === null) {
          resolvePromise({ stdout, stderr, code: 0 });
        } else if (typeof error.code === 'number') {
          resolvePromise({ stdout, stderr, code: error.code });
        } else if (error.killed === true || (error.signal ?? null) !== null) {
          resolvePromise({
            stdout,
            stderr: `${stderr}\n[killed by ${String(error.signal)}]`,
            code: -1,
          });
        } else {
          reject(new Error(`cannot run ${file}: ${error.message}`)); // ENOENT and other spawn errors
        }
      },
    );
    if (opts.input !== undefined) {
      child.stdin?.end(opts.input);
    } else {
      child.stdin?.end();
    }
  });
}

async function runOk(
  file: string,
  args: readonly string[],
  opts: { input?: string; cwd?: string } = {},
): Promise<string> {
  const res = await run(file, args, opts);
  if (res.code !== 0) {
    throw new Error(`${file} ${args.join(' ')} exited ${res.code}: ${res.stderr.trim()}`);
  }
  return res.stdout;
}

async function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('could not allocate a port'));
        return;
      }
      const port = addr.port;
      srv.close(() => resolvePromise(port));
    });
  });
}

async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) {
    ports.add(await freePort());
  }
  return [...ports];
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function tail(path: string, lines = 40): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** GET url; resolves with status and body, or null on connection errors. */
function httpGet(url: string, ca?: string): Promise<{ status: number; body: string } | null> {
  return new Promise((resolvePromise) => {
    const u = new URL(url);
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(
      u,
      { method: 'GET', timeout: 3000, agent: false, ...(ca !== undefined ? { ca } : {}) },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolvePromise(null));
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// cleanup of child processes on exit
//
// Two layers: process 'exit'/signal handlers (effective in plain Node; inside jest, `process` is a
// sandboxed copy whose events never fire) and a detached watchdog shell that kills the process
// groups when this process's pid disappears (covers jest workers, SIGKILL, crashes).

interface Tracked {
  pgids: number[];
  watchdogPgid: number | undefined;
  tempDir: string;
  keep: boolean;
}
const live = new Set<Tracked>();
let handlersInstalled = false;

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

function cleanupAllSync(): void {
  for (const t of live) {
    if (t.watchdogPgid !== undefined) killGroup(t.watchdogPgid, 'SIGKILL');
    for (const pgid of t.pgids) killGroup(pgid, 'SIGKILL');
    if (!t.keep) rmSync(t.tempDir, { recursive: true, force: true });
  }
  live.clear();
}

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      cleanupAllSync();
      // Restore default behaviour unless someone else handles the signal.
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, handler);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, handler);
  }
}

/**
 * A detached shell that kills the control plane if this Node process dies without running its
 * exit handlers (SIGKILL, jest force-exit): polls our pid every 2 s.
 */
function spawnWatchdog(pgids: readonly number[], tempDir: string, keep: boolean): ChildProcess {
  const script = [
    'parent=$1; dir=$2; keep=$3; shift 3',
    'while kill -0 "$parent" 2>/dev/null; do sleep 2; done',
    'for g in "$@"; do kill -TERM -- "-$g" 2>/dev/null; done',
    'sleep 5',
    'for g in "$@"; do kill -KILL -- "-$g" 2>/dev/null; done',
    '[ "$keep" = 1 ] || rm -rf -- "$dir"',
  ].join('\n');
  const child = spawn(
    'bash',
    [
      '-c',
      script,
      'erpguard-cp-watchdog',
      String(process.pid),
      tempDir,
      keep ? '1' : '0',
      ...pgids.map(String),
    ],
    { detached: true, stdio: 'ignore' },
  );
  child.unref();
  return child;
}

// ---------------------------------------------------------------------------------------------
// binaries

async function resolveBinDir(opts: ControlPlaneOptions, log: (m: string) => void): Promise<string> {
  if (opts.binDir !== undefined) return opts.binDir;
  const fromEnv = process.env['ERPGUARD_TOOLS_BIN'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  log('running hack/build-tools.sh (no-op when cached; a cold build takes tens of minutes)');
  const res = await run('bash', [join(repoRoot, 'hack', 'build-tools.sh')], {
    timeoutMs: 60 * 60_000,
  });
  if (res.code !== 0) {
    throw new Error(
      `hack/build-tools.sh failed (${res.code}):\n${res.stderr.split('\n').slice(-30).join('\n')}`,
    );
  }
  const lines = res.stdout.trim().split('\n');
  const dir = lines[lines.length - 1] ?? '';
  if (dir === '' || !existsSync(dir))
    throw new Error(`hack/build-tools.sh printed no bin dir: ${res.stdout}`);
  return dir;
}

function binary(binDir: string, name: 'etcd' | 'kube-apiserver' | 'kubectl' | 'helm'): string {
  const envName = {
    etcd: 'TEST_ASSET_ETCD',
    'kube-apiserver': 'TEST_ASSET_KUBE_APISERVER',
    kubectl: 'TEST_ASSET_KUBECTL',
    helm: 'TEST_ASSET_HELM',
  }[name];
  const override = process.env[envName];
  return override !== undefined && override !== '' ? override : join(binDir, name);
}

// ---------------------------------------------------------------------------------------------
// PKI (openssl)

interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
}

async function writeExt(path: string, lines: readonly string[]): Promise<void> {
  await writeFile(path, `${lines.join('\n')}\n`);
}

async function createCa(dir: string): Promise<Pki> {
  await mkdir(dir, { recursive: true });
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.crt');
  // prettier-ignore
  await runOk('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '2', '-subj', '/CN=erpguard-e2e-ca', '-keyout', caKey, '-out', caCert,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  return { dir, caCert, caKey };
}

/** Creates `<base>.key` + `<base>.csr`; subject like `/O=grp/CN=name`. */
async function createKeyAndCsr(base: string, subject: string): Promise<void> {
  // prettier-ignore
  await runOk('openssl', [
    'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', subject, '-keyout', `${base}.key`, '-out', `${base}.csr`,
  ]);
}

async function signCsr(pki: Pki, base: string, ext: readonly string[]): Promise<void> {
  await writeExt(`${base}.ext`, ext);
  // prettier-ignore
  await runOk('openssl', [
    'x509', '-req', '-in', `${base}.csr`, '-CA', pki.caCert, '-CAkey', pki.caKey,
    '-set_serial', `0x${randomBytes(12).toString('hex')}`, '-days', '2', '-sha256',
    '-extfile', `${base}.ext`, '-out', `${base}.crt`,
  ]);
}

function subjectFor(name: string, groups: readonly string[]): string {
  for (const s of [name, ...groups]) {
    if (!SAFE_NAME.test(s)) throw new Error(`unsupported user or group name: ${JSON.stringify(s)}`);
  }
  return `${groups.map((g) => `/O=${g}`).join('')}/CN=${name}`;
}

const CLIENT_EXT = [
  'basicConstraints=CA:FALSE',
  'keyUsage=critical,digitalSignature',
  'extendedKeyUsage=clientAuth',
];

// ---------------------------------------------------------------------------------------------
// kubeconfig

interface KubeconfigParts {
  server: string;
  caData: string; // base64
  user: string;
  certData: string; // base64
  keyData: string; // base64
}

function kubeconfigJson(p: KubeconfigParts): string {
  return `${JSON.stringify(
    {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'erpguard-e2e',
          cluster: { server: p.server, 'certificate-authority-data': p.caData },
        },
      ],
      users: [
        {
          name: p.user,
          user: { 'client-certificate-data': p.certData, 'client-key-data': p.keyData },
        },
      ],
      contexts: [{ name: 'erpguard-e2e', context: { cluster: 'erpguard-e2e', user: p.user } }],
      'current-context': 'erpguard-e2e',
    },
    null,
    2,
  )}\n`;
}

const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');

// ---------------------------------------------------------------------------------------------
// tool runners shared by both modes

function makeRunners(
  binDir: string,
  tempDir: string,
  adminKubeconfig: string,
): Pick<ControlPlane, 'kubectl' | 'helm'> {
  const home = join(tempDir, 'home');
  const env = (): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = { ...process.env, HOME: home };
    delete e['KUBECONFIG'];
    e['HELM_CACHE_HOME'] = join(home, 'helm-cache');
    e['HELM_CONFIG_HOME'] = join(home, 'helm-config');
    e['HELM_DATA_HOME'] = join(home, 'helm-data');
    return e;
  };
  const exec = async (
    bin: string,
    args: readonly string[],
    opts: RunOptions,
  ): Promise<CommandResult> => {
    await mkdir(home, { recursive: true });
    return run(bin, ['--kubeconfig', opts.kubeconfig ?? adminKubeconfig, ...args], {
      env: env(),
      input: opts.input,
      timeoutMs: opts.timeoutMs,
    });
  };
  return {
    kubectl: (args, opts = {}) => exec(binary(binDir, 'kubectl'), args, opts),
    helm: (args, opts = {}) => exec(binary(binDir, 'helm'), args, opts),
  };
}

// ---------------------------------------------------------------------------------------------
// local control plane

const spawnErrors = new WeakMap<ChildProcess, Error>();

function spawnLogged(bin: string, args: readonly string[], logPath: string): ChildProcess {
  if (!existsSync(bin)) throw new Error(`binary not found: ${bin} (run hack/build-tools.sh)`);
  const fd = openSync(logPath, 'a');
  try {
    const child = spawn(bin, [...args], { detached: true, stdio: ['ignore', fd, fd] });
    child.on('error', (err) => spawnErrors.set(child, err));
    child.unref();
    return child;
  } finally {
    closeSync(fd);
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null || spawnErrors.has(child);
}

async function waitUntil(
  what: string,
  deadline: number,
  probe: () => Promise<boolean>,
  failFast: () => string | null,
): Promise<void> {
  for (;;) {
    const failure = failFast();
    if (failure !== null) throw new Error(`${what}: ${failure}`);
    if (await probe()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not ready before the deadline`);
    await sleep(250);
  }
}

async function stopProcess(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.pid === undefined || exited(child)) return;
  const done = new Promise<void>((r) => child.once('exit', () => r()));
  killGroup(child.pid, 'SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((r) => {
    timer = setTimeout(() => r(true), graceMs);
  });
  try {
    if (await Promise.race([done.then(() => false), timedOut])) {
      killGroup(child.pid, 'SIGKILL');
      await done;
    }
  } finally {
    clearTimeout(timer);
  }
  // Members of the group other than the leader (none expected) get a last SIGKILL.
  killGroup(child.pid, 'SIGKILL');
}

async function startLocal(
  opts: ControlPlaneOptions,
  log: (m: string) => void,
): Promise<ControlPlane> {
  const binDir = await resolveBinDir(opts, log);
  const keep = opts.keepTempDir === true || process.env['ERPGUARD_KEEP_CLUSTER_DIR'] === '1';
  const tempDir = await mkdtemp(join(tmpdir(), 'erpguard-cp-'));
  const tracked: Tracked = { pgids: [], watchdogPgid: undefined, tempDir, keep };
  installExitHandlers();
  live.add(tracked);

  const children: ChildProcess[] = [];
  const users = new Map<string, UserCredentials>();

  const stop = async (): Promise<void> => {
    if (!live.has(tracked)) return;
    if (tracked.watchdogPgid !== undefined) killGroup(tracked.watchdogPgid, 'SIGKILL');
    // apiserver first (it would otherwise log etcd connection errors while shutting down)
    for (const child of [...children].reverse()) await stopProcess(child, 15_000);
    live.delete(tracked);
    if (!keep) await rm(tempDir, { recursive: true, force: true });
    else log(`kept ${tempDir}`);
  };

  try {
    const pki = await createCa(join(tempDir, 'pki'));
    const p = (f: string): string => join(pki.dir, f);
    await Promise.all([
      (async () => {
        await createKeyAndCsr(p('apiserver'), '/CN=kube-apiserver');
        await signCsr(pki, p('apiserver'), [
          'basicConstraints=CA:FALSE',
          'keyUsage=critical,digitalSignature,keyEncipherment',
          'extendedKeyUsage=serverAuth',
          'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc',
        ]);
      })(),
      (async () => {
        await createKeyAndCsr(p('admin'), '/O=system:masters/CN=erpguard-e2e-admin');
        await signCsr(pki, p('admin'), CLIENT_EXT);
      })(),
      runOk('openssl', [
        'genpkey',
        '-algorithm',
        'RSA',
        '-pkeyopt',
        'rsa_keygen_bits:2048',
        '-out',
        p('sa.key'),
      ]).then(() => runOk('openssl', ['pkey', '-in', p('sa.key'), '-pubout', '-out', p('sa.pub')])),
    ]);

    const [etcdPort, etcdPeerPort, apiPort] = (await freePorts(3)) as [number, number, number];
    const serverUrl = `https://127.0.0.1:${apiPort}`;
    const started = Date.now();
    const deadline = started + (opts.readyTimeoutMs ?? 90_000);

    const etcdLog = join(tempDir, 'etcd.log');
    const etcd = spawnLogged(
      binary(binDir, 'etcd'),
      [
        '--name=e2e',
        `--data-dir=${join(tempDir, 'etcd-data')}`,
        `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-cluster=e2e=http://127.0.0.1:${etcdPeerPort}`,
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
      etcdLog,
    );
    children.push(etcd);
    if (etcd.pid !== undefined) tracked.pgids.push(etcd.pid);

    await waitUntil(
      'etcd',
      deadline,
      async () => (await httpGet(`http://127.0.0.1:${etcdPort}/health`))?.status === 200,
      () => (exited(etcd) ? `exited early; log:\n${tail(etcdLog)}` : null),
    );

    const apiLog = join(tempDir, 'kube-apiserver.log');
    const apiserver = spawnLogged(
      binary(binDir, 'kube-apiserver'),
      [
        `--etcd-servers=http://127.0.0.1:${etcdPort}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${apiPort}`,
        '--advertise-address=127.0.0.1',
        '--endpoint-reconciler-type=none',
        `--tls-cert-file=${p('apiserver.crt')}`,
        `--tls-private-key-file=${p('apiserver.key')}`,
        `--client-ca-file=${pki.caCert}`,
        `--service-account-issuer=${serverUrl}`,
        `--service-account-key-file=${p('sa.pub')}`,
        `--service-account-signing-key-file=${p('sa.key')}`,
        `--api-audiences=${serverUrl}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        '--authorization-mode=RBAC',
        '--disable-admission-plugins=ServiceAccount',
        '--allow-privileged=true',
        `--cert-dir=${join(tempDir, 'apiserver-certs')}`,
        '--v=1',
        ...(opts.extraApiServerFlags ?? []),
      ],
      apiLog,
    );
    children.push(apiserver);
    if (apiserver.pid !== undefined) tracked.pgids.push(apiserver.pid);
    tracked.watchdogPgid = spawnWatchdog(tracked.pgids, tempDir, keep).pid;

    const caCertPem = await readFile(pki.caCert, 'utf8');
    await waitUntil(
      'kube-apiserver',
      deadline,
      async () => {
        const res = await httpGet(`${serverUrl}/readyz`, caCertPem);
        return res?.status === 200 && res.body.trim() === 'ok';
      },
      () => (exited(apiserver) ? `exited early; log:\n${tail(apiLog)}` : null),
    ).catch((err: unknown) => {
      const msg = err instanceof Error ? err.message : String(err);
      throw new Error(`${msg}\n--- kube-apiserver.log (tail) ---\n${tail(apiLog)}`);
    });
    const startupMs = Date.now() - started;
    log(`control plane ready at ${serverUrl} in ${startupMs} ms (logs in ${tempDir})`);

    const caData = b64(caCertPem);
    const kubeconfigPath = join(tempDir, 'admin.kubeconfig');
    await writeFile(
      kubeconfigPath,
      kubeconfigJson({
        server: serverUrl,
        caData,
        user: 'erpguard-e2e-admin',
        certData: b64(await readFile(p('admin.crt'))),
        keyData: b64(await readFile(p('admin.key'))),
      }),
      { mode: 0o600 },
    );

    const createUserCredentials = async (
      name: string,
      groups: readonly string[] = [],
    ): Promise<UserCredentials> => {
      const base = join(pki.dir, `user-${name.replace(/[^A-Za-z0-9._-]/g, '_')}`);
      await createKeyAndCsr(base, subjectFor(name, groups));
      await signCsr(pki, base, CLIENT_EXT);
      const creds: UserCredentials = {
        name,
        groups: [...groups],
        certPath: `${base}.crt`,
        keyPath: `${base}.key`,
        kubeconfigPath: `${base}.kubeconfig`,
      };
      await writeFile(
        creds.kubeconfigPath,
        kubeconfigJson({
          server: serverUrl,
          caData,
          user: name,
          certData: b64(await readFile(creds.certPath)),
          keyData: b64(await readFile(creds.keyPath)),
        }),
        { mode: 0o600 },
      );
      users.set(name, creds);
      return creds;
    };

    return {
      external: false,
      kubeconfigPath,
      serverUrl,
      binDir,
      tempDir,
      caCertPem,
      startupMs,
      ...makeRunners(binDir, tempDir, kubeconfigPath),
      createUserCredentials,
      userKubeconfig: (name) => userKubeconfigFrom(users, name),
      stop,
    };
  } catch (err) {
    const keepOnFailure = process.env['ERPGUARD_KEEP_CLUSTER_DIR'] === '1';
    tracked.keep = keepOnFailure || keep;
    await stop().catch(() => undefined);
    throw err;
  }
}

function userKubeconfigFrom(users: ReadonlyMap<string, UserCredentials>, name: string): string {
  const creds = users.get(name);
  if (creds === undefined)
    throw new Error(`no credentials for user ${name}; call createUserCredentials first`);
  return creds.kubeconfigPath;
}

// ---------------------------------------------------------------------------------------------
// existing cluster (E2E_USE_EXISTING_CLUSTER=1)

interface MinifiedKubeconfig {
  clusters?: { cluster?: { server?: string; 'certificate-authority-data'?: string } }[];
}

async function startExternal(
  opts: ControlPlaneOptions,
  log: (m: string) => void,
): Promise<ControlPlane> {
  const kubeconfigPath = process.env['KUBECONFIG'] ?? join(homedir(), '.kube', 'config');
  if (kubeconfigPath.includes(':') || !existsSync(kubeconfigPath)) {
    throw new Error(
      `E2E_USE_EXISTING_CLUSTER=1 needs KUBECONFIG to name one existing file (got ${kubeconfigPath})`,
    );
  }
  const binDir = await resolveBinDir(opts, log);
  const tempDir = await mkdtemp(join(tmpdir(), 'erpguard-ext-'));
  const tracked: Tracked = { pgids: [], watchdogPgid: undefined, tempDir, keep: false };
  installExitHandlers();
  live.add(tracked);
  const runners = makeRunners(binDir, tempDir, kubeconfigPath);
  const view = await runners.kubectl([
    'config',
    'view',
    '--raw',
    '--minify',
    '--flatten',
    '-o',
    'json',
  ]);
  if (view.code !== 0) throw new Error(`kubectl config view failed: ${view.stderr}`);
  const cluster = (JSON.parse(view.stdout) as MinifiedKubeconfig).clusters?.[0]?.cluster;
  const serverUrl = cluster?.server ?? '';
  const caData = cluster?.['certificate-authority-data'] ?? '';
  if (serverUrl === '') throw new Error('cannot read the server URL from KUBECONFIG');
  const ready = await runners.kubectl(['get', '--raw', '/readyz']);
  if (ready.code !== 0) throw new Error(`existing cluster not ready: ${ready.stderr}`);
  log(`using existing cluster ${serverUrl}`);

  const users = new Map<string, UserCredentials>();
  const createUserCredentials = async (
    name: string,
    groups: readonly string[] = [],
  ): Promise<UserCredentials> => {
    const base = join(tempDir, `user-${name.replace(/[^A-Za-z0-9._-]/g, '_')}`);
    await createKeyAndCsr(base, subjectFor(name, groups));
    const csrName = `erpguard-e2e-${name.toLowerCase().replace(/[^a-z0-9-]/g, '-')}-${randomBytes(4).toString('hex')}`;
    const csr = {
      apiVersion: 'certificates.k8s.io/v1',
      kind: 'CertificateSigningRequest',
      metadata: { name: csrName },
      spec: {
        request: b64(await readFile(`${base}.csr`)),
        signerName: 'kubernetes.io/kube-apiserver-client',
        usages: ['client auth'],
        expirationSeconds: 86_400,
      },
    };
    const mustOk = async (args: readonly string[], input?: string): Promise<string> => {
      const res = await runners.kubectl(args, input !== undefined ? { input } : {});
      if (res.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${res.stderr}`);
      return res.stdout;
    };
    await mustOk(['create', '-f', '-'], JSON.stringify(csr));
    try {
      await mustOk(['certificate', 'approve', csrName]);
      let certData = '';
      const deadline = Date.now() + 60_000;
      while (certData === '' && Date.now() < deadline) {
        certData = (
          await mustOk(['get', 'csr', csrName, '-o', 'jsonpath={.status.certificate}'])
        ).trim();
        if (certData === '') await sleep(500);
      }
      if (certData === '') throw new Error(`CSR ${csrName} was not signed within 60 s`);
      await writeFile(`${base}.crt`, Buffer.from(certData, 'base64'));
      const creds: UserCredentials = {
        name,
        groups: [...groups],
        certPath: `${base}.crt`,
        keyPath: `${base}.key`,
        kubeconfigPath: `${base}.kubeconfig`,
      };
      await writeFile(
        creds.kubeconfigPath,
        kubeconfigJson({
          server: serverUrl,
          caData,
          user: name,
          certData,
          keyData: b64(await readFile(creds.keyPath)),
        }),
        { mode: 0o600 },
      );
      users.set(name, creds);
      return creds;
    } finally {
      await runners.kubectl(['delete', 'csr', csrName, '--ignore-not-found']);
    }
  };

  return {
    external: true,
    kubeconfigPath,
    serverUrl,
    binDir,
    tempDir,
    caCertPem: caData === '' ? '' : Buffer.from(caData, 'base64').toString('utf8'),
    startupMs: 0,
    ...runners,
    createUserCredentials,
    userKubeconfig: (name) => userKubeconfigFrom(users, name),
    stop: async () => {
      live.delete(tracked);
      await rm(tempDir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------

/**
 * Starts etcd + kube-apiserver (or attaches to an existing cluster when
 * E2E_USE_EXISTING_CLUSTER=1). Always call stop(); exit handlers and a watchdog kill the
 * processes if the test process ends without it.
 */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`[control-plane] ${m}\n`));
  if (process.env['E2E_USE_EXISTING_CLUSTER'] === '1') return startExternal(opts, log);
  return startLocal(opts, log);
}

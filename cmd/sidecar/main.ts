#!/usr/bin/env node
/**
 * The in-pod sidecar (container `erpguard-proxy`, injected by the webhook). Configuration comes
 * from the environment the injector sets (docs/sidecar.md): it obtains its certificate with the
 * projected ServiceAccount token, watches its policy snapshot, and serves inbound mTLS, the
 * outbound proxy and the admin endpoints until SIGTERM.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { load } from 'js-yaml';
import { randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { startSidecar } from '../../pkg/sidecar/sidecar.js';
import type { DestinationResolver } from '../../pkg/sidecar/types.js';
import { createLogger } from '../../pkg/telemetry/logger.js';
import {
  PolicyWatchClient,
  watchCredentialsFrom,
  WorkloadIdentityClient,
} from '../../pkg/workload-identity/index.js';
import { policySourceFrom, tlsSourceFrom } from '../shared/identity-sources.js';

/**
 * Settings come from, in order: flags (`--module finance`), a config file (`--config FILE`, YAML
 * with the same keys as the flags), then the environment the injector sets (ERPGUARD_MODULE, ...).
 */
const FLAGS = {
  module: 'ERPGUARD_MODULE',
  namespace: 'ERPGUARD_NAMESPACE',
  'trust-domain': 'ERPGUARD_TRUST_DOMAIN',
  'cluster-domain': 'ERPGUARD_CLUSTER_DOMAIN',
  controller: 'ERPGUARD_CONTROLLER_ADDRESS',
  'app-port': 'ERPGUARD_APP_PORT',
  'inbound-port': 'ERPGUARD_INBOUND_PORT',
  'outbound-port': 'ERPGUARD_OUTBOUND_PORT',
  'admin-port': 'ERPGUARD_ADMIN_PORT',
  'token-file': 'ERPGUARD_TOKEN_FILE',
  'trust-bundle-file': 'ERPGUARD_TRUST_BUNDLE_FILE',
  'tokenize-key-file': 'ERPGUARD_TOKENIZE_KEY_FILE',
  'audit-log': 'ERPGUARD_AUDIT_LOG',
  'module-accounts': 'ERPGUARD_MODULE_ACCOUNTS',
} as const;
const settings = new Map<string, string>();
try {
  const { values } = parseArgs({
    options: {
      config: { type: 'string' },
      ...Object.fromEntries(Object.keys(FLAGS).map((f) => [f, { type: 'string' as const }])),
    },
    strict: true,
  });
  if (typeof values.config === 'string') {
    const file = load(readFileSync(values.config, 'utf8'), { maxAliases: 0 });
    if (typeof file !== 'object' || file === null || Array.isArray(file))
      throw new Error(`${values.config}: expected a map of settings`);
    for (const [key, value] of Object.entries(file)) {
      const name = FLAGS[key as keyof typeof FLAGS] as string | undefined;
      if (name === undefined)
        throw new Error(
          `${values.config}: unknown setting ${JSON.stringify(key)} (known: ${Object.keys(FLAGS).join(', ')})`,
        );
      settings.set(name, String(value));
    }
  }
  for (const [flag, name] of Object.entries(FLAGS)) {
    const value = (values as Record<string, unknown>)[flag];
    if (typeof value === 'string') settings.set(name, value);
  }
} catch (error) {
  process.stderr.write(
    `erpguard-proxy: InvalidConfig: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(2);
}

const env = (name: string, fallback?: string): string => {
  const value = settings.get(name) ?? process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    process.stderr.write(
      `erpguard-proxy: InvalidConfig: environment variable ${name} is required\n`,
    );
    process.exit(2);
  }
  return value;
};
const port = (name: string, fallback: string): number => {
  const value = Number(env(name, fallback));
  // 0 asks the OS for a free port (tests, local runs).
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    process.stderr.write(
      `erpguard-proxy: InvalidConfig: ${name} must be a port number (0-65535)\n`,
    );
    process.exit(2);
  }
  return value;
};

const module = env('ERPGUARD_MODULE');
const namespace = env('ERPGUARD_NAMESPACE');
const trustDomain = env('ERPGUARD_TRUST_DOMAIN', 'cluster.local');
const clusterDomain = env('ERPGUARD_CLUSTER_DOMAIN', 'cluster.local');
const tokenFile = env('ERPGUARD_TOKEN_FILE', '/var/run/secrets/erpguard.io/serviceaccount/token');
const trustBundleFile = env(
  'ERPGUARD_TRUST_BUNDLE_FILE',
  '/var/run/secrets/erpguard.io/serviceaccount/ca.crt',
);
const logger = createLogger('sidecar', { fields: { module, namespace } });

/**
 * `<module>.<namespace>.svc[.<clusterDomain>]` → that Service's port 15443, expecting the SPIFFE ID
 * of the module's ServiceAccount: by convention named after the module, or as listed in
 * ERPGUARD_MODULE_ACCOUNTS (`finance=erp/finance-sa,crm=erp/crm`).
 */
function serviceResolver(): DestinationResolver {
  const accounts = new Map(
    (settings.get('ERPGUARD_MODULE_ACCOUNTS') ?? process.env['ERPGUARD_MODULE_ACCOUNTS'] ?? '')
      .split(',')
      .filter(Boolean)
      .map((entry) => {
        const [mod = '', account = ''] = entry.split('=');
        return [mod.trim(), account.trim()] as const;
      }),
  );
  const inboundPort = port('ERPGUARD_INBOUND_PORT', '15443');
  return (host) => {
    const match = new RegExp(
      `^([a-z0-9-]+)\\.([a-z0-9-]+)(\\.svc(\\.${clusterDomain.replace(/\./g, '\\.')})?)?$`,
    ).exec(host.toLowerCase());
    if (!match?.[1] || !match[2]) return undefined;
    const [, destination, ns] = match;
    const [accountNs, account] = (accounts.get(destination) ?? `${ns}/${destination}`).split('/');
    const fqdn = `${destination}.${ns}.svc.${clusterDomain}`;
    return {
      module: destination,
      address: { host: fqdn, port: inboundPort },
      identities: [`spiffe://${trustDomain}/ns/${accountNs ?? ns}/sa/${account ?? destination}`],
      serverName: fqdn,
    };
  };
}

const readToken = (): string => readFileSync(tokenFile, 'utf8').trim();
const trustBundlePem = readFileSync(trustBundleFile, 'utf8');
const connection = { target: env('ERPGUARD_CONTROLLER_ADDRESS') };
const registry = new Registry();
const identity = new WorkloadIdentityClient({
  ...connection,
  trustBundlePem,
  token: readToken,
  registry,
  logger: logger.child({ part: 'identity-client' }),
});
await identity.start();
const watch = new PolicyWatchClient({
  ...connection,
  module,
  namespace,
  credentials: watchCredentialsFrom(identity, { trustBundlePem, token: readToken }),
  registry,
  logger: logger.child({ part: 'policy-watch' }),
});
watch.start();

const sidecar = await startSidecar({
  module,
  namespace,
  trustDomain,
  inbound: {
    host: '0.0.0.0',
    port: port('ERPGUARD_INBOUND_PORT', '15443'),
    appPort: port('ERPGUARD_APP_PORT', '8080'),
  },
  outbound: { host: '127.0.0.1', port: port('ERPGUARD_OUTBOUND_PORT', '15001') },
  admin: { host: '0.0.0.0', port: port('ERPGUARD_ADMIN_PORT', '15020') },
  tls: tlsSourceFrom(identity),
  policy: policySourceFrom(watch, identity),
  resolveDestination: serviceResolver(),
  // Tokens must be stable across the replicas of a module: use a shared key from a Secret.
  tokenizeKey: process.env['ERPGUARD_TOKENIZE_KEY_FILE']
    ? readFileSync(process.env['ERPGUARD_TOKENIZE_KEY_FILE'])
    : randomBytes(32),
  auditLogPath: env('ERPGUARD_AUDIT_LOG', '/var/run/erpguard/audit.log'),
  registry,
  logger,
});
logger.info('erpguard-proxy ready', {
  inbound: sidecar.inboundPort,
  outbound: sidecar.outboundPort,
  admin: sidecar.adminPort,
});

const shutdown = (): void => {
  logger.info('shutting down');
  void sidecar
    .close(10_000)
    .finally(() => {
      watch.stop();
      identity.stop();
    })
    .then(() => process.exit(0));
};
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);

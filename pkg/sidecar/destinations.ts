/**
 * DestinationResolver implementations: a static map (local mode, tests) and the Kubernetes Service
 * DNS convention (in a cluster). A host that matches nothing is not a module (the outbound proxy
 * then consults its egress allow-list).
 */
import type { DestinationResolver, ModuleDestination } from './types.js';

export interface StaticDestination {
  module: string;
  /** Namespace of the module's Service: adds `<module>.<ns>`, `<module>.<ns>.svc[.<clusterDomain>]`. */
  namespace?: string;
  /** More host names for this module (exact, case-insensitive). */
  hosts?: readonly string[];
  /** Its inbound sidecar. */
  address: { host: string; port: number };
  identities: readonly string[];
  serverName?: string;
}

/**
 * Matches `<module>`, and with a namespace `<module>.<ns>`, `<module>.<ns>.svc`,
 * `<module>.<ns>.svc.<clusterDomain>`, plus `hosts`. The port the app named is ignored: every
 * module is reached at its inbound sidecar's address.
 */
export function staticDestinationResolver(
  entries: readonly StaticDestination[],
  clusterDomain = 'cluster.local',
): DestinationResolver {
  const byHost = new Map<string, ModuleDestination>();
  for (const e of entries) {
    const dest: ModuleDestination = {
      module: e.module,
      address: { ...e.address },
      identities: [...e.identities],
    };
    if (e.serverName !== undefined) dest.serverName = e.serverName;
    const names = [e.module, ...(e.hosts ?? [])];
    if (e.namespace !== undefined) {
      const ns = e.namespace;
      names.push(
        `${e.module}.${ns}`,
        `${e.module}.${ns}.svc`,
        `${e.module}.${ns}.svc.${clusterDomain}`,
      );
    }
    for (const n of names) {
      const key = n.toLowerCase();
      const existing = byHost.get(key);
      if (existing !== undefined && existing.module !== e.module) {
        throw new Error(`host ${JSON.stringify(n)} names both ${existing.module} and ${e.module}`);
      }
      byHost.set(key, dest);
    }
  }
  return (host) => byHost.get(host.toLowerCase());
}

export interface ServiceDnsOptions {
  trustDomain: string;
  clusterDomain?: string;
  /** Port of the inbound sidecar on the Service; default 15443. */
  inboundPort?: number;
  /** Module → its namespace and the ServiceAccounts its workloads run as. */
  modules: Readonly<Record<string, { namespace: string; serviceAccounts: readonly string[] }>>;
}

/**
 * `<module>.<ns>.svc[.<clusterDomain>]` (and `<module>.<ns>`) → `<module>.<ns>.svc.<clusterDomain>:15443`,
 * expecting `spiffe://<td>/ns/<ns>/sa/<sa>` for the module's ServiceAccounts. A bare `<module>` is
 * not resolved here: its namespace would be a guess.
 */
export function serviceDnsDestinationResolver(opts: ServiceDnsOptions): DestinationResolver {
  const clusterDomain = opts.clusterDomain ?? 'cluster.local';
  const port = opts.inboundPort ?? 15443;
  const suffixes = ['', '.svc', `.svc.${clusterDomain}`];
  return (host) => {
    const h = host.toLowerCase();
    for (const [module, m] of Object.entries(opts.modules)) {
      const base = `${module}.${m.namespace}`;
      if (!suffixes.some((s) => h === base + s)) continue;
      const fqdn = `${base}.svc.${clusterDomain}`;
      return {
        module,
        address: { host: fqdn, port },
        identities: m.serviceAccounts.map(
          (sa) => `spiffe://${opts.trustDomain}/ns/${m.namespace}/sa/${sa}`,
        ),
        serverName: fqdn,
      };
    }
    return undefined;
  };
}

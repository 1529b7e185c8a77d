/**
 * SPIFFE IDs of erpguard workloads: `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`.
 * The format is fixed (DESIGN.md §2); parsing is exact, so two spellings never name one identity.
 * One implementation for the CA, the identity service and the sidecar: identity parsing is
 * security-critical and must not exist in two copies that can drift.
 */
import { X509Certificate } from 'node:crypto';

export interface WorkloadName {
  namespace: string;
  serviceAccount: string;
}

// Kubernetes names: namespaces are DNS-1123 labels, ServiceAccounts DNS-1123 subdomains.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// SPIFFE trust domain: lower-case letters, digits, dot, dash, underscore.
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;

export function isDnsLabel(value: string): boolean {
  return DNS_LABEL.test(value);
}
export function isDnsSubdomain(value: string): boolean {
  return value.length <= 253 && DNS_SUBDOMAIN.test(value);
}
export function isTrustDomain(value: string): boolean {
  return TRUST_DOMAIN.test(value);
}

export function spiffeIdFor(trustDomain: string, name: WorkloadName): string {
  if (!isTrustDomain(trustDomain)) throw new Error(`invalid trust domain "${trustDomain}"`);
  if (!isDnsLabel(name.namespace)) throw new Error(`invalid namespace "${name.namespace}"`);
  if (!isDnsSubdomain(name.serviceAccount)) {
    throw new Error(`invalid service account "${name.serviceAccount}"`);
  }
  return `spiffe://${trustDomain}/ns/${name.namespace}/sa/${name.serviceAccount}`;
}

export interface ParsedSpiffeId extends WorkloadName {
  trustDomain: string;
}

/** Parses a workload SPIFFE ID; null unless it has exactly the erpguard shape. */
export function parseSpiffeId(id: string): ParsedSpiffeId | null {
  if (id.length > 2048 || !id.startsWith('spiffe://')) return null;
  const parts = id.slice('spiffe://'.length).split('/');
  if (parts.length !== 5) return null;
  const [trustDomain, nsKey, namespace, saKey, serviceAccount] = parts;
  if (
    trustDomain === undefined ||
    namespace === undefined ||
    serviceAccount === undefined ||
    nsKey !== 'ns' ||
    saKey !== 'sa' ||
    !isTrustDomain(trustDomain) ||
    !isDnsLabel(namespace) ||
    !isDnsSubdomain(serviceAccount)
  ) {
    return null;
  }
  return { trustDomain, namespace, serviceAccount };
}

/**
 * Splits Node's `subjectaltname` string ("URI:a, DNS:b") into entries. Node quotes values that
 * contain separators as JSON strings, so a crafted URI cannot smuggle a second entry.
 */
export function parseSubjectAltNames(text: string | undefined): { type: string; value: string }[] {
  if (text === undefined || text === '') return [];
  const out: { type: string; value: string }[] = [];
  let rest = text;
  while (rest.length > 0) {
    const colon = rest.indexOf(':');
    if (colon <= 0) throw new Error('malformed subjectAltName');
    const type = rest.slice(0, colon);
    rest = rest.slice(colon + 1);
    let value: string;
    if (rest.startsWith('"')) {
      let end = 1;
      while (end < rest.length && rest[end] !== '"') end += rest[end] === '\\' ? 2 : 1;
      if (end >= rest.length) throw new Error('malformed subjectAltName');
      value = JSON.parse(rest.slice(0, end + 1)) as string;
      rest = rest.slice(end + 1);
    } else {
      const comma = rest.indexOf(', ');
      value = comma < 0 ? rest : rest.slice(0, comma);
      rest = comma < 0 ? '' : rest.slice(comma);
    }
    out.push({ type, value });
    if (rest.startsWith(', ')) rest = rest.slice(2);
    else if (rest.length > 0) throw new Error('malformed subjectAltName');
  }
  return out;
}

/**
 * The SPIFFE ID of a peer certificate. SPIFFE X509-SVID: exactly one URI SAN, and it must be a
 * SPIFFE ID; anything else (no URI, two URIs) is not an identity and gives null.
 */
export function spiffeIdOfCertificate(
  // A tls.PeerCertificate, structurally: only its subjectaltname is read.
  cert: { subjectaltname?: string } | X509Certificate | Buffer | string,
): string | null {
  let sanText: string | undefined;
  try {
    if (cert instanceof X509Certificate) sanText = cert.subjectAltName;
    else if (Buffer.isBuffer(cert) || typeof cert === 'string') {
      sanText = new X509Certificate(cert).subjectAltName;
    } else sanText = cert.subjectaltname;
    const uris = parseSubjectAltNames(sanText).filter((entry) => entry.type === 'URI');
    if (uris.length !== 1) return null;
    const uri = uris[0]?.value ?? '';
    return parseSpiffeId(uri) === null ? null : uri;
  } catch {
    return null;
  }
}

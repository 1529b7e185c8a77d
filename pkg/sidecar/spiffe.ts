/**
 * Peer identity from an X.509-SVID: exactly one URI SAN, `spiffe://<td>/ns/<ns>/sa/<sa>`, of our
 * trust domain, inside its validity window. Parsing is exact so two spellings never name one
 * identity (no case folding, no percent-decoding, no trailing slash).
 */
import type { X509Certificate } from 'node:crypto';

import { SidecarCode } from './codes.js';
import { parseSpiffeId, parseSubjectAltNames } from '../spiffe/spiffe.js';
import type { PeerIdentity } from './types.js';

export { parseSpiffeId, parseSubjectAltNames } from '../spiffe/spiffe.js';
export type { ParsedSpiffeId } from '../spiffe/spiffe.js';

export type IdentityCheck =
  | { ok: true; identity: PeerIdentity }
  | {
      ok: false;
      code: typeof SidecarCode.InvalidPeerIdentity | typeof SidecarCode.PeerCertificateNotValid;
      message: string;
      /** The SPIFFE ID when one could be read (for the audit record). */
      spiffeId?: string;
    };

/** The fields of a certificate the check needs (X509Certificate and tests provide them). */
export interface CertificateFacts {
  subjectAltName: string | undefined;
  validFrom: string;
  validTo: string;
}

/**
 * Reads and checks the identity of a peer certificate that TLS already verified against the trust
 * bundle: exactly one URI SAN, a SPIFFE ID of `trustDomain`, and `now` inside the validity window
 * (TLS checked the window against the system clock; this checks it against ours too).
 */
export function identityOfCertificate(
  cert: CertificateFacts | X509Certificate,
  trustDomain: string,
  now: number,
): IdentityCheck {
  let uris: string[];
  try {
    uris = parseSubjectAltNames(cert.subjectAltName)
      .filter((e) => e.type === 'URI')
      .map((e) => e.value);
  } catch {
    return {
      ok: false,
      code: SidecarCode.InvalidPeerIdentity,
      message: 'malformed subjectAltName',
    };
  }
  if (uris.length !== 1) {
    return {
      ok: false,
      code: SidecarCode.InvalidPeerIdentity,
      message: `certificate has ${uris.length} URI SANs; exactly one SPIFFE ID is required`,
    };
  }
  const spiffeId = uris[0] as string;
  const parsed = parseSpiffeId(spiffeId);
  if (parsed === null) {
    return {
      ok: false,
      code: SidecarCode.InvalidPeerIdentity,
      message: 'URI SAN is not a spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> ID',
    };
  }
  if (parsed.trustDomain !== trustDomain) {
    return {
      ok: false,
      code: SidecarCode.InvalidPeerIdentity,
      spiffeId,
      message: `trust domain ${JSON.stringify(parsed.trustDomain)} is not ${JSON.stringify(trustDomain)}`,
    };
  }
  const notBefore = Date.parse(cert.validFrom);
  const notAfter = Date.parse(cert.validTo);
  if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter)) {
    return {
      ok: false,
      code: SidecarCode.PeerCertificateNotValid,
      spiffeId,
      message: 'unreadable validity dates',
    };
  }
  const identity: PeerIdentity = { spiffeId, ...parsed, notBefore, notAfter };
  const validity = checkValidity(identity, now);
  if (validity !== undefined) {
    return { ok: false, code: SidecarCode.PeerCertificateNotValid, spiffeId, message: validity };
  }
  return { ok: true, identity };
}

/** undefined when `now` is inside the certificate's validity window, else why not. */
export function checkValidity(identity: PeerIdentity, now: number): string | undefined {
  if (now < identity.notBefore) return 'certificate is not yet valid';
  if (now > identity.notAfter) return 'certificate has expired';
  return undefined;
}

/** The ServiceAccount-name convention: module = ServiceAccount, unless the snapshot binds it. */
export function defaultIdentityResolver(
  identity: PeerIdentity,
  snapshot: { identityBindings?: Readonly<Record<string, string>> },
): { module: string; namespace: string } {
  const bound = snapshot.identityBindings;
  const module =
    bound !== undefined && Object.hasOwn(bound, identity.spiffeId)
      ? bound[identity.spiffeId]
      : undefined;
  return { module: module ?? identity.serviceAccount, namespace: identity.namespace };
}

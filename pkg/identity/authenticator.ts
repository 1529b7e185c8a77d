/**
 * Who is calling: the Authenticator port turns a bearer token into a Kubernetes identity.
 * Adapters: StaticTokenAuthenticator here (local mode), a TokenReview adapter in pkg/kube.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { open } from 'node:fs/promises';

import { load } from 'js-yaml';

import { TOKEN_AUDIENCE } from '../api/v1alpha1/index.js';
import { isDnsLabel, isDnsSubdomain, type WorkloadName } from '../ca/spiffe.js';
import { ErpguardError, ErrorCode } from '../errors/errors.js';

export interface AuthenticatedCaller extends WorkloadName {
  /** Module bound to the ServiceAccount, when the authenticator knows it. */
  module?: string;
}

export interface Authenticator {
  /**
   * Resolves the caller of a bearer token. Returns null when the token is not valid; may throw
   * ErpguardError(Unauthenticated, why) to give the log a reason (expired, wrong audience).
   * Any other error means "cannot decide now" and is reported to the client as UNAVAILABLE.
   */
  authenticate(token: string): Promise<AuthenticatedCaller | null>;
}

/** Which module a ServiceAccount belongs to (pkg/kube: the SA's `erpguard.io/module` label). */
export interface ModuleResolver {
  moduleOf(identity: WorkloadName): Promise<string | null>;
}

export interface ModuleBinding extends WorkloadName {
  module: string;
}

/** One entry of the local-mode token file. */
export interface StaticTokenEntry {
  /** The token itself, or its SHA-256 (hex) so the file holds no secret. */
  token?: string;
  tokenSha256?: string;
  namespace: string;
  serviceAccount: string;
  module?: string;
  /** Audiences the token was minted for; when given, the configured audience must be one. */
  audiences?: string[];
  /** RFC 3339; the token is refused from then on. */
  expiresAt?: string;
}

interface StoredEntry {
  digest: Buffer;
  caller: AuthenticatedCaller;
  audiences: readonly string[] | null;
  expiresAtMs: number | null;
}

const MAX_TOKEN_BYTES = 16 * 1024;
const MAX_FILE_BYTES = 1024 * 1024;
const MAX_ENTRIES = 10_000;

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function invalid(field: string, message: string): ErpguardError {
  return new ErpguardError(ErrorCode.InvalidConfig, `${field}: ${message}`);
}

function optionalString(
  entry: Record<string, unknown>,
  key: string,
  field: string,
): string | undefined {
  const value = entry[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '')
    throw invalid(`${field}.${key}`, 'must be a non-empty string');
  return value;
}

/** Validates one entry of a parsed token file; `field` names it in errors (`tokens[3]`). */
export function parseStaticTokenEntry(value: unknown, field: string): StaticTokenEntry {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(field, 'must be a mapping');
  }
  const entry = value as Record<string, unknown>;
  const known = new Set([
    'token',
    'tokenSha256',
    'namespace',
    'serviceAccount',
    'module',
    'audiences',
    'expiresAt',
  ]);
  for (const key of Object.keys(entry)) {
    if (!known.has(key)) throw invalid(`${field}.${key}`, 'unknown field');
  }
  const token = optionalString(entry, 'token', field);
  const tokenSha256 = optionalString(entry, 'tokenSha256', field);
  if ((token === undefined) === (tokenSha256 === undefined)) {
    throw invalid(field, 'exactly one of token and tokenSha256 is required');
  }
  if (tokenSha256 !== undefined && !/^[0-9a-f]{64}$/.test(tokenSha256)) {
    throw invalid(`${field}.tokenSha256`, 'must be 64 lower-case hex digits');
  }
  if (token !== undefined && Buffer.byteLength(token) > MAX_TOKEN_BYTES) {
    throw invalid(`${field}.token`, 'is too long');
  }
  const namespace = optionalString(entry, 'namespace', field);
  if (namespace === undefined || !isDnsLabel(namespace)) {
    throw invalid(`${field}.namespace`, 'must be a DNS-1123 label');
  }
  const serviceAccount = optionalString(entry, 'serviceAccount', field);
  if (serviceAccount === undefined || !isDnsSubdomain(serviceAccount)) {
    throw invalid(`${field}.serviceAccount`, 'must be a DNS-1123 subdomain');
  }
  const module = optionalString(entry, 'module', field);
  if (module !== undefined && !isDnsLabel(module))
    throw invalid(`${field}.module`, 'must be a DNS-1123 label');
  const audiences = entry['audiences'];
  if (
    audiences !== undefined &&
    (!Array.isArray(audiences) || !audiences.every((a) => typeof a === 'string'))
  ) {
    throw invalid(`${field}.audiences`, 'must be a list of strings');
  }
  const expiresAt = optionalString(entry, 'expiresAt', field);
  if (expiresAt !== undefined && Number.isNaN(Date.parse(expiresAt))) {
    throw invalid(`${field}.expiresAt`, 'must be an RFC 3339 time');
  }
  const out: StaticTokenEntry = { namespace, serviceAccount };
  if (token !== undefined) out.token = token;
  if (tokenSha256 !== undefined) out.tokenSha256 = tokenSha256;
  if (module !== undefined) out.module = module;
  if (audiences !== undefined) out.audiences = audiences;
  if (expiresAt !== undefined) out.expiresAt = expiresAt;
  return out;
}

/**
 * Local-mode authenticator: a fixed list of tokens, each bound to a namespace, ServiceAccount
 * and optional module. Tokens are compared by SHA-256 digest in constant time.
 *
 * File format (YAML or JSON):
 *   tokens:
 *     - token: "…"            # or tokenSha256: "<hex>"
 *       namespace: erp
 *       serviceAccount: finance
 *       module: finance
 *       audiences: [erpguard]  # optional
 *       expiresAt: "2027-01-01T00:00:00Z"  # optional
 */
export class StaticTokenAuthenticator implements Authenticator, ModuleResolver {
  private readonly byDigest = new Map<string, StoredEntry>();
  private readonly audience: string;
  private readonly clock: () => number;

  constructor(
    entries: readonly StaticTokenEntry[],
    options: { audience?: string; clock?: () => number } = {},
  ) {
    this.audience = options.audience ?? TOKEN_AUDIENCE;
    this.clock = options.clock ?? Date.now;
    if (entries.length > MAX_ENTRIES) throw invalid('tokens', `at most ${MAX_ENTRIES} entries`);
    const modules = new Map<string, string>();
    entries.forEach((raw, i) => {
      const entry = parseStaticTokenEntry(raw, `tokens[${i}]`);
      const digest =
        entry.tokenSha256 !== undefined
          ? Buffer.from(entry.tokenSha256, 'hex')
          : sha256(entry.token ?? '');
      const key = digest.toString('hex');
      if (this.byDigest.has(key)) throw invalid(`tokens[${i}]`, 'duplicate token');
      const saKey = `${entry.namespace}/${entry.serviceAccount}`;
      if (entry.module !== undefined) {
        const bound = modules.get(saKey);
        if (bound !== undefined && bound !== entry.module) {
          throw invalid(`tokens[${i}].module`, `${saKey} is already bound to module ${bound}`);
        }
        modules.set(saKey, entry.module);
      }
      const caller: AuthenticatedCaller = {
        namespace: entry.namespace,
        serviceAccount: entry.serviceAccount,
      };
      if (entry.module !== undefined) caller.module = entry.module;
      this.byDigest.set(key, {
        digest,
        caller,
        audiences: entry.audiences ?? null,
        expiresAtMs: entry.expiresAt === undefined ? null : Date.parse(entry.expiresAt),
      });
    });
    // Every token of a ServiceAccount resolves to the same module.
    for (const stored of this.byDigest.values()) {
      const bound = modules.get(`${stored.caller.namespace}/${stored.caller.serviceAccount}`);
      if (bound !== undefined) stored.caller.module = bound;
    }
  }

  /** Reads a token file (YAML or JSON, at most 1 MiB). */
  static async fromFile(
    path: string,
    options: { audience?: string; clock?: () => number } = {},
  ): Promise<StaticTokenAuthenticator> {
    let text: string;
    try {
      const handle = await open(path, 'r');
      try {
        const stat = await handle.stat();
        if (!stat.isFile())
          throw new ErpguardError(ErrorCode.FileUnreadable, `${path} is not a file`);
        if (stat.size > MAX_FILE_BYTES)
          throw new ErpguardError(ErrorCode.InputTooLarge, `${path} is larger than 1 MiB`);
        text = (await handle.readFile()).toString('utf8');
      } finally {
        await handle.close();
      }
    } catch (error) {
      if (error instanceof ErpguardError) throw error;
      throw new ErpguardError(ErrorCode.FileUnreadable, `cannot read token file ${path}`, {
        cause: error,
      });
    }
    let parsed: unknown;
    try {
      parsed = load(text, { maxAliases: 0 });
    } catch (error) {
      throw new ErpguardError(ErrorCode.ParseError, `${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const tokens = (parsed as { tokens?: unknown } | null)?.tokens;
    if (!Array.isArray(tokens)) throw invalid(`${path}: tokens`, 'must be a list');
    return new StaticTokenAuthenticator(tokens as StaticTokenEntry[], options);
  }

  authenticate(token: string): Promise<AuthenticatedCaller | null> {
    if (token === '' || Buffer.byteLength(token) > MAX_TOKEN_BYTES) return Promise.resolve(null);
    const digest = sha256(token);
    const stored = this.byDigest.get(digest.toString('hex'));
    // The map lookup is keyed by a digest, so timing reveals nothing about the token; the
    // explicit comparison guards against a future change of the lookup structure.
    if (stored === undefined || !timingSafeEqual(stored.digest, digest))
      return Promise.resolve(null);
    if (stored.expiresAtMs !== null && this.clock() >= stored.expiresAtMs) {
      return Promise.reject(new ErpguardError(ErrorCode.Unauthenticated, 'token expired'));
    }
    if (stored.audiences !== null && !stored.audiences.includes(this.audience)) {
      return Promise.reject(
        new ErpguardError(ErrorCode.Unauthenticated, `token audience is not ${this.audience}`),
      );
    }
    return Promise.resolve({ ...stored.caller });
  }

  moduleOf(identity: WorkloadName): Promise<string | null> {
    for (const stored of this.byDigest.values()) {
      const c = stored.caller;
      if (c.namespace === identity.namespace && c.serviceAccount === identity.serviceAccount) {
        return Promise.resolve(c.module ?? null);
      }
    }
    return Promise.resolve(null);
  }

  /** ServiceAccount → module bindings, for PolicyIndex.setIdentityBindings. */
  bindings(): ModuleBinding[] {
    const out = new Map<string, ModuleBinding>();
    for (const { caller } of this.byDigest.values()) {
      if (caller.module === undefined) continue;
      out.set(`${caller.namespace}/${caller.serviceAccount}`, {
        namespace: caller.namespace,
        serviceAccount: caller.serviceAccount,
        module: caller.module,
      });
    }
    return [...out.values()];
  }
}

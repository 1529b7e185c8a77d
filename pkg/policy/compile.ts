/**
 * Compiles verified ErpIntegrationPolicies into lookup tables for decide.ts.
 *
 * Layout: destination module → caller module → caller namespace → one table for Enforce-mode and
 * one for Audit-mode rules. A table holds
 *  - an HTTP matcher: the path templates as a trie (literal children, one `{param}` child, `**`
 *    terminals), determinised at compile time so that a decision follows exactly one state per
 *    path segment, whatever the number of rules. Every state carries, per method, the single best
 *    rule ending there and the best `**` rule covering it. States, transitions and terminals are
 *    flattened into typed arrays, literal segments and methods into small integers shared by the
 *    whole set: a decision touches a few cache lines per segment instead of chasing Map entries;
 *  - two gRPC maps: `service/Method` (exact) and `service` (for `methods: ['*']`).
 * Precedence between rules that match the same call is resolved here once, into the candidate's
 * index (lower wins): most specific path first (path-template.ts), then the lower policy name
 * (`namespace/name`, code-unit order), then the lower rule index, then the template text.
 *
 * Determinising a trie with `{param}` children can grow exponentially for adversarial template
 * sets, so the number of states per table is capped; above the cap that table keeps the plain trie
 * and decide.ts walks all live branches at once (linear in the path length times the number of
 * overlapping templates, never exponential). CompiledPolicySet.stats reports when that happens.
 *
 * Input policies are assumed to have passed validation and verification; anything unusable that
 * slips through (a lower-case method, a bad template) is skipped and reported in `problems`, so a
 * bad entry can only ever allow less, never more.
 */
import {
  ANY_METHOD,
  DEFAULT_MODE,
  HTTP_METHODS,
  type DataProtection,
  type ErpIntegrationPolicy,
  type PolicyMode,
  type PolicyRule,
  type RateLimit,
} from '../api/v1alpha1/index.js';
import type { RuleRef } from './decision-types.js';
import {
  DEFAULT_MAX_TARGET_LENGTH,
  isValidMethodToken,
  type NormalizeLimits,
} from './normalize-path.js';
import { parsePathTemplate, type PathTemplate } from './path-template.js';

export interface CompileOptions {
  /** Compile only the policies whose destination is this module (what a sidecar needs). */
  destinationModule?: string;
  /** Longest accepted request target, default 2048. */
  maxTargetLength?: number;
  /** Cap on determinised states per table (default max(4096, 16 × trie nodes)). */
  maxStatesPerTable?: number;
}

/** Something in a policy that could not be compiled and was skipped (it allows nothing). */
export interface CompileProblem {
  /** `namespace/name`. */
  policy: string;
  /** Field path, e.g. `spec.rules[1].paths[0]`. */
  field: string;
  message: string;
}

/** One rule (for one method, for HTTP) that can allow a call. Immutable. */
export interface Candidate {
  /** Precedence within its table: lower wins. */
  readonly order: number;
  readonly ref: RuleRef;
  /** Path template or gRPC pattern (`svc/Method`, `svc/*`). */
  readonly template: string;
  readonly rateLimit: RateLimit | undefined;
  readonly dataProtection: DataProtection | undefined;
  /** Precomputed `message` of an allowing decision. */
  readonly message: string;
}

/**
 * An HTTP matcher: its states live in CompiledPolicySet.httpArena, one record per state at an
 * offset: `[other, nTrans, nExact, nRest, (segmentId, target) × nTrans, (methodId, candidate) ×
 * nExact, (methodId, candidate) × nRest]`, transitions sorted by segment id. `other` is the transition on any segment without a
 * literal transition (determinised) or the `{param}` child (trie form); -1 for none. `exact` holds
 * the best rule ending at the state, `rest` the best `**` rule whose prefix ends there. Targets are
 * offsets; candidates index CompiledPolicySet.candidates, where a lower index wins within a table.
 * One record is usually one cache line, so a decision touches about one line per path segment.
 */
export interface HttpMatcher {
  /** True: one state per segment. False: the trie, walked on all live branches. */
  readonly deterministic: boolean;
  /** Offset of the root record. */
  readonly root: number;
  readonly states: number;
}

/** Fixed fields at the start of a state record. */
export const REC_OTHER = 0;
export const REC_TRANS = 1;
export const REC_EXACT = 2;
export const REC_REST = 3;
export const REC_HEADER = 4;

export interface MatchTable {
  readonly http: HttpMatcher | null;
  /** `service/Method` → best rule. */
  readonly grpcExact: ReadonlyMap<string, Candidate> | null;
  /** `service` → best `methods: ['*']` rule. */
  readonly grpcService: ReadonlyMap<string, Candidate> | null;
}

export interface CompiledCaller {
  readonly module: string;
  readonly namespace: string;
  readonly enforce: MatchTable | null;
  readonly audit: MatchTable | null;
  /** Names of the Enforce-mode and Audit-mode policies of this caller, sorted. */
  readonly enforcePolicies: readonly string[];
  readonly auditPolicies: readonly string[];
  /** For messages: `policy erp/a`, `policies erp/a, erp/b`. */
  readonly enforceLabel: string;
  readonly auditLabel: string;
  readonly allLabel: string;
}

export interface CompiledDestination {
  readonly module: string;
  /** Caller module → caller namespace → tables. */
  readonly callers: ReadonlyMap<string, ReadonlyMap<string, CompiledCaller>>;
}

export interface CompileStats {
  policies: number;
  rules: number;
  /** Determinised states over all tables. */
  states: number;
  /** Tables that exceeded the state cap and use the trie walk. */
  nonDeterministicTables: number;
}

export interface CompiledPolicySet {
  readonly destinations: ReadonlyMap<string, CompiledDestination>;
  /** Literal path segment → id used in HttpMatcher.trans. */
  readonly segmentIds: ReadonlyMap<string, number>;
  /** HTTP method → id used in state records. */
  readonly methodIds: ReadonlyMap<string, number>;
  /** State records of all HTTP matchers (see HttpMatcher). Read-only by contract. */
  readonly httpArena: Int32Array;
  /** HTTP candidates of all tables; each table's run is sorted by precedence. */
  readonly candidates: readonly Candidate[];
  readonly maxTargetLength: number;
  /** `{ maxLength: maxTargetLength }`, allocated once for normalizeRequestTarget. */
  readonly limits: Readonly<NormalizeLimits>;
  readonly problems: readonly CompileProblem[];
  readonly stats: CompileStats;
}

interface HttpEntry {
  policy: string;
  ruleIndex: number;
  template: PathTemplate;
  methods: readonly string[];
  base: CandidateBase;
}

interface GrpcEntry {
  policy: string;
  ruleIndex: number;
  service: string;
  /** undefined for `*`. */
  method: string | undefined;
  base: CandidateBase;
}

interface CandidateBase {
  ref: RuleRef;
  rateLimit: RateLimit | undefined;
  dataProtection: DataProtection | undefined;
}

/** Ids shared by all tables of one compiled set. */
interface Ids {
  segments: Map<string, number>;
  methods: Map<string, number>;
  arena: number[];
  candidates: Candidate[];
}

interface TableBuilder {
  http: HttpEntry[];
  grpc: GrpcEntry[];
}

interface CallerBuilder {
  module: string;
  namespace: string;
  enforce: TableBuilder;
  audit: TableBuilder;
  enforcePolicies: string[];
  auditPolicies: string[];
}

const GRPC_SERVICE = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function policyName(policy: ErpIntegrationPolicy): string {
  return `${policy.metadata.namespace ?? 'default'}/${policy.metadata.name}`;
}

/** Compiles already-verified policies; pure and deterministic (input order does not matter). */
export function compilePolicies(
  policies: readonly ErpIntegrationPolicy[],
  opts: CompileOptions = {},
): CompiledPolicySet {
  const problems: CompileProblem[] = [];
  const ids: Ids = {
    segments: new Map(),
    methods: new Map(HTTP_METHODS.map((m, i) => [m, i])),
    arena: [],
    candidates: [],
  };
  const byDestination = new Map<string, Map<string, CallerBuilder>>();
  const named = policies
    .filter(
      (p) =>
        opts.destinationModule === undefined ||
        p.spec?.destination?.module === opts.destinationModule,
    )
    .map((p) => ({ name: policyName(p), policy: p }))
    .sort((a, b) => compareStrings(a.name, b.name));

  let ruleCount = 0;
  for (const { name, policy } of named) {
    const spec = policy.spec;
    const destination = spec?.destination?.module;
    const source = spec?.source?.module;
    if (typeof destination !== 'string' || typeof source !== 'string') {
      problems.push({
        policy: name,
        field: 'spec',
        message: 'source.module and destination.module are required',
      });
      continue;
    }
    const namespace = spec.source.namespace ?? policy.metadata.namespace ?? 'default';
    const mode: PolicyMode = spec.mode ?? DEFAULT_MODE;
    const callers = getOrCreate(byDestination, destination, () => new Map<string, CallerBuilder>());
    const caller = getOrCreate(callers, `${namespace}/${source}`, () => ({
      module: source,
      namespace,
      enforce: { http: [], grpc: [] },
      audit: { http: [], grpc: [] },
      enforcePolicies: [],
      auditPolicies: [],
    }));
    (mode === 'Audit' ? caller.auditPolicies : caller.enforcePolicies).push(name);
    const table = mode === 'Audit' ? caller.audit : caller.enforce;
    const rateLimit = freezeRateLimit(spec.rateLimit);
    const dataProtection = freezeDataProtection(spec.dataProtection);
    const rules: readonly PolicyRule[] = Array.isArray(spec.rules) ? spec.rules : [];
    if (!Array.isArray(spec.rules)) {
      problems.push({ policy: name, field: 'spec.rules', message: 'must be a list' });
    }
    ruleCount += rules.length;
    rules.forEach((rule, ruleIndex) => {
      const base: CandidateBase = {
        ref: Object.freeze({ policy: name, ruleIndex, mode }),
        rateLimit,
        dataProtection,
      };
      addRule(table, name, ruleIndex, rule, base, problems, ids);
    });
  }

  const maxTargetLength = opts.maxTargetLength ?? DEFAULT_MAX_TARGET_LENGTH;
  const stats: CompileStats = {
    policies: named.length,
    rules: ruleCount,
    states: 0,
    nonDeterministicTables: 0,
  };
  const destinations = new Map<string, CompiledDestination>();
  for (const [module, callerBuilders] of byDestination) {
    const callers = new Map<string, Map<string, CompiledCaller>>();
    for (const b of callerBuilders.values()) {
      const compiled: CompiledCaller = Object.freeze({
        module: b.module,
        namespace: b.namespace,
        enforce: buildTable(b.enforce, stats, opts.maxStatesPerTable, ids),
        audit: buildTable(b.audit, stats, opts.maxStatesPerTable, ids),
        enforcePolicies: Object.freeze(b.enforcePolicies),
        auditPolicies: Object.freeze(b.auditPolicies),
        enforceLabel: label(b.enforcePolicies),
        auditLabel: label(b.auditPolicies),
        allLabel: label([...b.enforcePolicies, ...b.auditPolicies].sort(compareStrings)),
      });
      getOrCreate(callers, b.module, () => new Map<string, CompiledCaller>()).set(
        b.namespace,
        compiled,
      );
    }
    destinations.set(module, Object.freeze({ module, callers }));
  }
  return Object.freeze({
    destinations,
    segmentIds: ids.segments,
    methodIds: ids.methods,
    httpArena: Int32Array.from(ids.arena),
    candidates: Object.freeze(ids.candidates),
    maxTargetLength,
    limits: Object.freeze({ maxLength: maxTargetLength }),
    problems: Object.freeze(problems),
    stats,
  });
}

function addRule(
  table: TableBuilder,
  policy: string,
  ruleIndex: number,
  rule: PolicyRule,
  base: CandidateBase,
  problems: CompileProblem[],
  ids: Ids,
): void {
  const field = `spec.rules[${ruleIndex}]`;
  const isHttp = rule?.methods !== undefined || rule?.paths !== undefined;
  if (!isHttp && rule?.grpc === undefined) {
    problems.push({ policy, field, message: 'rule has neither methods+paths nor grpc' });
    return;
  }
  if (isHttp) {
    const methods = expandMethods(rule.methods, policy, `${field}.methods`, problems, ids);
    const paths = Array.isArray(rule.paths) ? rule.paths : [];
    if (paths.length === 0) problems.push({ policy, field: `${field}.paths`, message: 'no paths' });
    paths.forEach((path, j) => {
      const parsed = parsePathTemplate(path);
      if (!parsed.ok) {
        problems.push({ policy, field: `${field}.paths[${j}]`, message: parsed.message });
        return;
      }
      if (methods.length > 0)
        table.http.push({ policy, ruleIndex, template: parsed.template, methods, base });
    });
  }
  if (rule.grpc !== undefined) {
    const { service, methods } = rule.grpc;
    if (typeof service !== 'string' || !GRPC_SERVICE.test(service)) {
      problems.push({
        policy,
        field: `${field}.grpc.service`,
        message: 'not a fully qualified service name',
      });
      return;
    }
    (Array.isArray(methods) ? methods : []).forEach((method, j) => {
      if (method === ANY_METHOD) {
        table.grpc.push({ policy, ruleIndex, service, method: undefined, base });
      } else if (typeof method === 'string' && GRPC_METHOD.test(method)) {
        table.grpc.push({ policy, ruleIndex, service, method, base });
      } else {
        problems.push({
          policy,
          field: `${field}.grpc.methods[${j}]`,
          message: 'not a method name',
        });
      }
    });
  }
}

function expandMethods(
  methods: readonly string[] | undefined,
  policy: string,
  field: string,
  problems: CompileProblem[],
  ids: Ids,
): readonly string[] {
  const out = new Set<string>();
  (Array.isArray(methods) ? methods : []).forEach((method: unknown, i) => {
    if (method === ANY_METHOD) HTTP_METHODS.forEach((m) => out.add(m));
    else if (typeof method === 'string' && isValidMethodToken(method)) {
      out.add(method);
      if (!ids.methods.has(method)) ids.methods.set(method, ids.methods.size);
    } else
      problems.push({ policy, field: `${field}[${i}]`, message: 'not an upper-case method token' });
  });
  if (out.size === 0) problems.push({ policy, field, message: 'no usable method' });
  return [...out].sort(compareStrings);
}

function buildTable(
  b: TableBuilder,
  stats: CompileStats,
  maxStates: number | undefined,
  ids: Ids,
): MatchTable | null {
  if (b.http.length === 0 && b.grpc.length === 0) return null;
  return Object.freeze({
    http: b.http.length === 0 ? null : buildHttpMatcher(b.http, stats, maxStates, ids),
    ...buildGrpcMaps(b.grpc),
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP: trie, then determinisation, then flat arrays.

/** Terminals: method → candidate index (lower wins). */
type Terminals = Map<string, number>;

interface TrieNode {
  id: number;
  lit: Map<string, TrieNode>;
  param: TrieNode | null;
  exact: Terminals;
  rest: Terminals;
}

/** A state before flattening: a trie node or a set of them. */
interface ProtoState {
  lit: Map<string, number>;
  other: number;
  exact: Terminals | null;
  rest: Terminals | null;
}

function buildHttpMatcher(
  entries: HttpEntry[],
  stats: CompileStats,
  maxStates: number | undefined,
  ids: Ids,
): HttpMatcher {
  entries.sort(
    (a, b) =>
      compareStrings(a.template.specificity, b.template.specificity) ||
      compareStrings(a.policy, b.policy) ||
      a.ruleIndex - b.ruleIndex ||
      compareStrings(a.template.source, b.template.source),
  );
  let nextId = 0;
  const newNode = (): TrieNode => ({
    id: nextId++,
    lit: new Map(),
    param: null,
    exact: new Map(),
    rest: new Map(),
  });
  const root = newNode();
  // Entries arrive in precedence order, so candidate indexes grow with precedence and the first
  // candidate stored for a method at a node is the best one there.
  const candidates = ids.candidates;
  for (const entry of entries) {
    let node = root;
    for (const seg of entry.template.segments) {
      if (seg.kind === 'param') {
        node.param ??= newNode();
        node = node.param;
      } else {
        node = getOrCreate(node.lit, seg.value, newNode);
      }
    }
    const terminals = entry.template.rest ? node.rest : node.exact;
    for (const method of entry.methods) {
      if (!terminals.has(method)) terminals.set(method, candidates.length);
      candidates.push(httpCandidate(entry, method, candidates.length));
    }
  }
  const cap = maxStates ?? Math.max(4096, 16 * nextId);
  const dfa = determinise(root, cap);
  if (dfa !== undefined) {
    stats.states += dfa.length;
    return flatten(dfa, true, ids);
  }
  stats.nonDeterministicTables++;
  return flatten(trieStates(root, nextId), false, ids);
}

function httpCandidate(entry: HttpEntry, method: string, order: number): Candidate {
  const { ref } = entry.base;
  const audit = ref.mode === 'Audit' ? 'Audit-mode ' : '';
  return Object.freeze({
    order,
    ref,
    template: entry.template.source,
    rateLimit: entry.base.rateLimit,
    dataProtection: entry.base.dataProtection,
    message: `allowed by rule ${ref.ruleIndex} of ${audit}policy ${ref.policy}: ${method} ${entry.template.source}`,
  });
}

/** The trie itself as states (node id = state index; `other` = the `{param}` child). */
function trieStates(root: TrieNode, count: number): ProtoState[] {
  const states: ProtoState[] = new Array<ProtoState>(count);
  const visit = (node: TrieNode): void => {
    const lit = new Map<string, number>();
    for (const [k, child] of node.lit) {
      lit.set(k, child.id);
      visit(child);
    }
    if (node.param !== null) visit(node.param);
    states[node.id] = {
      lit,
      other: node.param === null ? -1 : node.param.id,
      exact: node.exact.size === 0 ? null : node.exact,
      rest: node.rest.size === 0 ? null : node.rest,
    };
  };
  visit(root);
  return states;
}

/** Subset construction over the trie; undefined when more than `cap` states would be needed. */
function determinise(root: TrieNode, cap: number): ProtoState[] | undefined {
  const index = new Map<string, number>();
  const states: ProtoState[] = [];
  const members: TrieNode[][] = [];
  const stateFor = (nodes: TrieNode[]): number => {
    if (nodes.length === 0) return -1;
    nodes.sort((a, b) => a.id - b.id);
    const key = nodes.map((n) => n.id).join(',');
    const known = index.get(key);
    if (known !== undefined) return known;
    if (states.length >= cap) throw new StateCapExceeded();
    const id = states.length;
    index.set(key, id);
    states.push({
      lit: new Map(),
      other: -1,
      exact: mergeTerminals(nodes, 'exact'),
      rest: mergeTerminals(nodes, 'rest'),
    });
    members.push(nodes);
    return id;
  };
  try {
    stateFor([root]);
    // States are appended while we go: a plain index loop visits each exactly once.
    for (let s = 0; s < states.length; s++) {
      const nodes = members[s] ?? [];
      const state = states[s] as ProtoState;
      const params = nodes.flatMap((n) => (n.param === null ? [] : [n.param]));
      const keys = new Set<string>();
      for (const n of nodes) for (const k of n.lit.keys()) keys.add(k);
      for (const k of [...keys].sort(compareStrings)) {
        const targets = nodes.flatMap((n) => {
          const child = n.lit.get(k);
          return child === undefined ? [] : [child];
        });
        state.lit.set(k, stateFor([...targets, ...params]));
      }
      state.other = stateFor([...params]);
    }
    return states;
  } catch (e) {
    if (e instanceof StateCapExceeded) return undefined;
    throw e;
  }
}

class StateCapExceeded extends Error {}

function mergeTerminals(nodes: readonly TrieNode[], which: 'exact' | 'rest'): Terminals | null {
  const present = nodes.map((n) => n[which]).filter((m) => m.size > 0);
  if (present.length === 0) return null;
  if (present.length === 1) return present[0] ?? null;
  const merged: Terminals = new Map();
  for (const m of present) {
    for (const [method, c] of m) {
      const best = merged.get(method);
      if (best === undefined || c < best) merged.set(method, c);
    }
  }
  return merged;
}

/** Appends the states' records to the arena; state i's targets become record offsets. */
function flatten(states: readonly ProtoState[], deterministic: boolean, ids: Ids): HttpMatcher {
  const arena = ids.arena;
  const terminals = (t: Terminals | null): number[] => {
    const out: number[] = [];
    for (const [method, c] of t ?? []) {
      const m = ids.methods.get(method);
      if (m !== undefined) out.push(m, c);
    }
    return out;
  };
  const exact = states.map((s) => terminals(s.exact));
  const rest = states.map((s) => terminals(s.rest));
  const offsets: number[] = [];
  let at = arena.length;
  states.forEach((s, i) => {
    offsets.push(at);
    at += REC_HEADER + 2 * s.lit.size + (exact[i]?.length ?? 0) + (rest[i]?.length ?? 0);
  });
  const offset = (state: number): number => (state < 0 ? -1 : (offsets[state] ?? -1));
  states.forEach((s, i) => {
    const e = exact[i] ?? [];
    const r = rest[i] ?? [];
    arena.push(offset(s.other), s.lit.size, e.length / 2, r.length / 2);
    // Sorted by segment id, so that decide.ts can binary-search states with a wide fan-out.
    const pairs = [...s.lit].map(([segment, target]): [number, number] => {
      let id = ids.segments.get(segment);
      if (id === undefined) {
        id = ids.segments.size;
        ids.segments.set(segment, id);
      }
      return [id, offset(target)];
    });
    pairs.sort((x, y) => x[0] - y[0]);
    for (const [id, target] of pairs) arena.push(id, target);
    arena.push(...e, ...r);
  });
  return Object.freeze({ deterministic, root: offsets[0] ?? -1, states: states.length });
}

// ---------------------------------------------------------------------------------------------
// gRPC

function buildGrpcMaps(entries: GrpcEntry[]): Pick<MatchTable, 'grpcExact' | 'grpcService'> {
  entries.sort((a, b) => compareStrings(a.policy, b.policy) || a.ruleIndex - b.ruleIndex);
  const exact = new Map<string, Candidate>();
  const service = new Map<string, Candidate>();
  entries.forEach((e, order) => {
    const key = e.method === undefined ? e.service : `${e.service}/${e.method}`;
    const map = e.method === undefined ? service : exact;
    if (map.has(key)) return;
    const { ref } = e.base;
    const audit = ref.mode === 'Audit' ? 'Audit-mode ' : '';
    const template = e.method === undefined ? `${e.service}/*` : key;
    map.set(
      key,
      Object.freeze({
        order,
        ref,
        template,
        rateLimit: e.base.rateLimit,
        dataProtection: e.base.dataProtection,
        message: `allowed by rule ${ref.ruleIndex} of ${audit}policy ${ref.policy}: grpc ${template}`,
      }),
    );
  });
  return {
    grpcExact: exact.size === 0 ? null : exact,
    grpcService: service.size === 0 ? null : service,
  };
}

// ---------------------------------------------------------------------------------------------
// helpers

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function getOrCreate<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = create();
    map.set(key, value);
  }
  return value;
}

function label(policies: readonly string[]): string {
  if (policies.length === 0) return 'no policy';
  if (policies.length === 1) return `policy ${policies[0] ?? ''}`;
  const shown = policies.slice(0, 3).join(', ');
  return policies.length > 3
    ? `policies ${shown} and ${policies.length - 3} more`
    : `policies ${shown}`;
}

function freezeRateLimit(r: RateLimit | undefined): RateLimit | undefined {
  if (r === undefined) return undefined;
  const copy: RateLimit = { requestsPerSecond: r.requestsPerSecond };
  if (r.burst !== undefined) copy.burst = r.burst;
  return Object.freeze(copy);
}

function freezeDataProtection(d: DataProtection | undefined): DataProtection | undefined {
  if (d === undefined) return undefined;
  const copy: DataProtection = {};
  if (d.mask !== undefined) copy.mask = Object.freeze([...d.mask]) as string[];
  if (d.tokenize !== undefined) copy.tokenize = Object.freeze([...d.tokenize]) as string[];
  return Object.freeze(copy);
}

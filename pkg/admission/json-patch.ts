/**
 * A JSON Patch (RFC 6902) builder. It adds, and sets or removes single map keys; it never
 * replaces a map or a list. It keeps a working copy of the document
 * and applies each operation to it as it is emitted, so later operations see earlier ones
 * (array indexes, maps created on the way) and the copy is the patched object. Missing maps and
 * arrays are created; existing ones are never replaced; keys are escaped per RFC 6901.
 */
import { ErpguardError, ErrorCode } from '../errors/errors.js';

export type PathToken = string | number;

export interface AddOperation {
  op: 'add';
  path: string;
  value: unknown;
}

export interface RemoveOperation {
  op: 'remove';
  path: string;
}

export type PatchOperation = AddOperation | RemoveOperation;

/** RFC 6901 §3: `~` becomes `~0` and `/` becomes `~1` (in that order). */
export function escapePointerToken(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** RFC 6901 §4: the inverse of {@link escapePointerToken}. */
export function unescapePointerToken(token: string): string {
  return token.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** A JSON Pointer for `tokens`; the empty list is the whole document (`""`). */
export function toPointer(tokens: readonly PathToken[]): string {
  let out = '';
  for (const t of tokens) out += '/' + (typeof t === 'number' ? String(t) : escapePointerToken(t));
  return out;
}

type Container = Record<string, unknown> | unknown[];

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** True when `value` is plain JSON: no undefined (it would silently vanish on the wire), no NaN. */
function isJsonValue(value: unknown): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object':
      if (value === null) return true;
      if (Array.isArray(value)) return value.every(isJsonValue);
      for (const k in value) {
        if (Object.hasOwn(value, k) && !isJsonValue((value as Record<string, unknown>)[k]))
          return false;
      }
      return true;
    default:
      return false;
  }
}

/** A key such as `__proto__` must stay a plain data key: defineProperty for it, assignment else. */
function setOwn(map: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(map, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  } else {
    map[key] = value;
  }
}

/**
 * Values passed in are taken over (not copied): do not change them afterwards.
 */
export class PatchBuilder {
  private readonly doc: Record<string, unknown>;
  private readonly ops: PatchOperation[] = [];
  /** Containers this builder copied and may change in place; everything else is shared. */
  private readonly owned = new WeakSet<object>();

  /**
   * `document` is never modified. The working copy is copy-on-write: only the maps and lists on
   * the paths of emitted operations are copied (a full deep copy per request dominated the cost
   * of injection), so it shares unchanged parts with `document`.
   */
  constructor(document: Record<string, unknown>) {
    this.doc = { ...document };
    this.owned.add(this.doc);
  }

  /** The operations emitted so far. */
  get operations(): readonly PatchOperation[] {
    return this.ops;
  }

  /** The working copy with every operation applied (shares unchanged parts with the input: read only). */
  get document(): Record<string, unknown> {
    return this.doc;
  }

  /** The value at `path`, or undefined when some step is missing. */
  get(path: readonly PathToken[]): unknown {
    let cur: unknown = this.doc;
    for (const t of path) {
      if (Array.isArray(cur) && typeof t === 'number') cur = cur[t];
      else if (isPlainObject(cur) && typeof t === 'string')
        cur = Object.hasOwn(cur, t) ? cur[t] : undefined;
      else return undefined;
    }
    return cur;
  }

  /**
   * Makes sure `path` is a map, creating missing maps along the way. Throws InvalidDocument when
   * something else (a string, an array, null) already sits there: we never replace.
   */
  ensureMap(path: readonly PathToken[]): Record<string, unknown> {
    return this.ensure(path, 'map') as Record<string, unknown>;
  }

  /** Makes sure `path` is an array (creating maps above it as needed). */
  ensureArray(path: readonly PathToken[]): unknown[] {
    return this.ensure(path, 'array') as unknown[];
  }

  /** Adds `key: value` to the map at `mapPath` (created if missing) unless the key exists. */
  addKeyIfAbsent(mapPath: readonly PathToken[], key: string, value: unknown): boolean {
    const existing = this.get(mapPath);
    if (existing === undefined) {
      // One operation creates the map with the key in it (fewer ops, same result).
      this.ensureParents(mapPath);
      this.emit(mapPath, { [key]: value });
      return true;
    }
    const map = this.ensureMap(mapPath);
    if (Object.hasOwn(map, key)) return false;
    this.emit([...mapPath, key], value);
    return true;
  }

  /**
   * Sets `key` to a scalar `value` in the map at `mapPath` (created if missing), replacing an
   * existing scalar (RFC 6902 `add` on an existing member replaces it). Used for annotations.
   */
  setKey(mapPath: readonly PathToken[], key: string, value: string): boolean {
    const existing = this.get(mapPath);
    if (existing !== undefined) {
      const map = this.ensureMap(mapPath);
      if (Object.hasOwn(map, key) && map[key] === value) return false;
      if (Object.hasOwn(map, key) && typeof map[key] === 'object' && map[key] !== null) {
        throw new ErpguardError(
          ErrorCode.InvalidDocument,
          `${toPointer([...mapPath, key])} is not a scalar`,
        );
      }
      this.emit([...mapPath, key], value);
      return true;
    }
    return this.addKeyIfAbsent(mapPath, key, value);
  }

  /** Removes `key` from the map at `mapPath` when present. */
  removeKey(mapPath: readonly PathToken[], key: string): boolean {
    const found = this.get(mapPath);
    if (!isPlainObject(found) || !Object.hasOwn(found, key)) return false;
    const map = this.writable(mapPath) as Record<string, unknown>;
    delete map[key];
    this.ops.push({ op: 'remove', path: toPointer([...mapPath, key]) });
    return true;
  }

  /** Inserts `value` at `index` of the array at `arrayPath` (created if missing). */
  insert(arrayPath: readonly PathToken[], index: number, value: unknown): void {
    const existing = this.get(arrayPath);
    if (existing === undefined) {
      if (index !== 0) {
        throw new ErpguardError(ErrorCode.Internal, `cannot insert at ${index} of a missing array`);
      }
      this.ensureParents(arrayPath);
      this.emit(arrayPath, [value]);
      return;
    }
    const arr = this.ensureArray(arrayPath);
    if (index < 0 || index > arr.length) {
      throw new ErpguardError(
        ErrorCode.Internal,
        `index ${index} out of range at ${toPointer(arrayPath)}`,
      );
    }
    // `-` is the RFC 6902 spelling of "append"; an explicit index inserts before that element.
    this.emit([...arrayPath, index === arr.length ? '-' : index], value);
  }

  /** Appends to the array at `arrayPath` (created if missing). */
  append(arrayPath: readonly PathToken[], value: unknown): void {
    const existing = this.get(arrayPath);
    this.insert(arrayPath, existing === undefined ? 0 : this.ensureArray(arrayPath).length, value);
  }

  private ensureParents(path: readonly PathToken[]): void {
    if (path.length > 1) this.ensureMap(path.slice(0, -1));
  }

  private ensure(path: readonly PathToken[], want: 'map' | 'array'): Container {
    let cur: unknown = this.doc;
    for (let i = 0; i < path.length; i++) {
      const t = path[i] as PathToken;
      const last = i === path.length - 1;
      let next: unknown;
      if (Array.isArray(cur) && typeof t === 'number') next = cur[t];
      else if (isPlainObject(cur) && typeof t === 'string')
        next = Object.hasOwn(cur, t) ? cur[t] : undefined;
      else {
        throw new ErpguardError(
          ErrorCode.InvalidDocument,
          `${toPointer(path.slice(0, i))} is not a map or list`,
        );
      }
      if (next === undefined || next === null) {
        if (next === null) {
          // The API server drops explicit nulls before admission; refuse rather than replace.
          throw new ErpguardError(
            ErrorCode.InvalidDocument,
            `${toPointer(path.slice(0, i + 1))} is null`,
          );
        }
        if (Array.isArray(cur)) {
          throw new ErpguardError(
            ErrorCode.InvalidDocument,
            `${toPointer(path.slice(0, i + 1))} is out of range`,
          );
        }
        const created: Container = last && want === 'array' ? [] : {};
        this.emit(path.slice(0, i + 1), created);
        next = created;
      }
      const wantHere = last ? want : typeof path[i + 1] === 'number' ? 'array' : 'map';
      if (wantHere === 'array' ? !Array.isArray(next) : !isPlainObject(next)) {
        throw new ErpguardError(
          ErrorCode.InvalidDocument,
          `${toPointer(path.slice(0, i + 1))} must be a ${wantHere === 'array' ? 'list' : 'map'}`,
        );
      }
      cur = next;
    }
    return cur as Container;
  }

  /** The container at `path` in the working copy, copied first unless this builder owns it. */
  private writable(path: readonly PathToken[]): Container | undefined {
    let cur: Container = this.doc;
    for (const t of path) {
      const child: unknown = Array.isArray(cur)
        ? typeof t === 'number'
          ? cur[t]
          : undefined
        : typeof t === 'string' && Object.hasOwn(cur, t)
          ? cur[t]
          : undefined;
      if (typeof child !== 'object' || child === null) return undefined;
      let mine = child as Container;
      if (!this.owned.has(mine)) {
        // Spread defines properties (no setter runs), so a `__proto__` key stays a plain key.
        mine = Array.isArray(mine) ? mine.slice() : { ...mine };
        this.owned.add(mine);
        if (Array.isArray(cur)) cur[t as number] = mine;
        else setOwn(cur, t as string, mine);
      }
      cur = mine;
    }
    return cur;
  }

  /** Records `add path value` and applies it to the working copy (RFC 6902 §4.1 semantics). */
  private emit(path: readonly PathToken[], value: unknown): void {
    const pointer = toPointer(path);
    if (!isJsonValue(value)) {
      throw new ErpguardError(
        ErrorCode.Internal,
        `patch value at ${pointer} is not plain JSON (undefined or not finite)`,
      );
    }
    if (path.length === 0)
      throw new ErpguardError(ErrorCode.Internal, 'refusing to replace the whole document');
    const parent = this.writable(path.slice(0, -1));
    const last = path[path.length - 1] as PathToken;
    // The value is taken over, not copied: the op and the working document share it, and the
    // document copies a node before changing it (copy-on-write), so the op never changes.
    const stored = value;
    if (Array.isArray(parent)) {
      if (last === '-') parent.push(stored);
      else if (typeof last === 'number') parent.splice(last, 0, stored);
      else throw new ErpguardError(ErrorCode.Internal, `bad array index at ${pointer}`);
    } else if (isPlainObject(parent) && typeof last === 'string') {
      setOwn(parent, last, stored);
    } else {
      throw new ErpguardError(ErrorCode.Internal, `no parent for ${pointer}`);
    }
    this.ops.push({ op: 'add', path: pointer, value: stored });
  }
}

/** base64 of the JSON patch, as AdmissionResponse.patch expects. */
export function encodePatch(ops: readonly PatchOperation[]): string {
  return Buffer.from(JSON.stringify(ops), 'utf8').toString('base64');
}

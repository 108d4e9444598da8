// Deterministic lifetime of native tensors (DESIGN.md "Memory and lifetime"): tidy(fn) disposes every
// tensor created inside fn except those it returns; keep(t) exempts a tensor from every open scope.
// GC finalisation is only a safety net: native (and GPU) memory is invisible to V8's heuristics.

/** Anything owning native memory that a scope can release. */
export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

const scopes: Set<Disposable>[] = [];

/** Registers a newly created tensor with the innermost open scope (called by the Tensor constructor). */
export function track(t: Disposable): void {
  if (scopes.length) scopes[scopes.length - 1].add(t);
}

/** Removes `t` from every open scope so that tidy() will not dispose it. Returns `t`. */
export function keep<T extends Disposable>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collect(value: unknown, out: Set<unknown>, seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if ('dispose' in value && 'isDisposed' in value) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collect(v, out, seen);
  else if (value instanceof Map) for (const v of value.values()) collect(v, out, seen);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) collect(v, out, seen);
}

/**
 * Runs `fn` and disposes every tensor created during it, except the tensors in its result (a tensor,
 * or arrays / plain objects / Maps holding tensors), which move to the enclosing scope.
 * `fn` must be synchronous: native memory cannot be scoped across an `await`.
 * @example const loss = tidy(() => model.forward(x).sub(y).square().mean());
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result && typeof (result as { then?: unknown }).then === 'function') {
    for (const t of scope) t.dispose();
    throw new TypeError('tidy: the function returned a Promise; tidy needs a synchronous function (wrap each synchronous step in its own tidy)');
  }
  const kept = new Set<unknown>();
  collect(result, kept, new Set());
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (kept.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/** Number of open tidy scopes (for diagnostics). */
export function scopeDepth(): number {
  return scopes.length;
}

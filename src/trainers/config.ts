// Typed trainer configs, resolved and validated up front (issue: "unknown keys rejected; errors say how
// to fix"). Each trainer declares a schema: per key its default, a check and a doc line (with the TRL
// name where it differs), and `resolveConfig` merges the user's object over the defaults.

export interface FieldSpec<T> {
  default: T;
  /** Returns an error phrase ("must be ≥ 2") or null when the value is fine. */
  check?: (v: T, all: Record<string, unknown>) => string | null;
  doc: string;
  /** The equivalent TRL config name, when it differs. */
  trl?: string;
}

export type Schema<C> = { [K in keyof C]: FieldSpec<C[K]> };

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

function suggest(key: string, keys: string[]): string | null {
  const norm = (s: string) => s.toLowerCase().replace(/[_-]/g, '');
  const k = norm(key);
  return keys.find((x) => norm(x) === k) ?? keys.find((x) => norm(x).startsWith(k) || k.startsWith(norm(x))) ?? null;
}

/**
 * Merges `user` over the schema's defaults, rejecting unknown keys (listing the valid ones, with a
 * did-you-mean) and values of the wrong type or out of range.
 */
export function resolveConfig<C>(name: string, schema: Schema<C>, user: Partial<C> | Record<string, unknown> = {}): C {
  const keys = Object.keys(schema) as (keyof C & string)[];
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(user)) {
    if (!(k in schema)) {
      const s = suggest(k, keys);
      throw new ConfigError(`${name}: unknown option '${k}'${s ? ` — did you mean '${s}'?` : '.'} Valid options: ${keys.join(', ')}`);
    }
    if (v === undefined) continue;
    const d = (schema as Record<string, FieldSpec<unknown>>)[k].default;
    if (d !== null && d !== undefined && typeof d !== typeof v && !(typeof d === 'object' && typeof v === 'object')) {
      throw new ConfigError(`${name}: option '${k}' must be a ${typeName(d)}, got ${typeName(v)} (${JSON.stringify(v)})`);
    }
    out[k] = v;
  }
  for (const k of keys) if (!(k in out)) out[k] = schema[k].default;
  for (const k of keys) {
    const err = schema[k].check?.(out[k] as C[typeof k], out);
    if (err) throw new ConfigError(`${name}: option '${k}' ${err}, got ${JSON.stringify(out[k])}`);
  }
  return out as C;
}

// ---- common checks ----
export const positive = (v: number) => (typeof v === 'number' && v > 0 && Number.isFinite(v) ? null : 'must be a positive number');
export const nonNegative = (v: number) => (typeof v === 'number' && v >= 0 && Number.isFinite(v) ? null : 'must be ≥ 0');
export const positiveInt = (v: number) => (Number.isInteger(v) && v > 0 ? null : 'must be a positive integer');
export const nonNegativeInt = (v: number) => (Number.isInteger(v) && v >= 0 ? null : 'must be an integer ≥ 0');
export const atLeast = (n: number) => (v: number) => (typeof v === 'number' && v >= n ? null : `must be ≥ ${n}`);
export const inRange = (lo: number, hi: number) => (v: number) => (typeof v === 'number' && v >= lo && v <= hi ? null : `must be in [${lo}, ${hi}]`);
export const oneOf = <T extends string>(...vals: T[]) => (v: T) => (vals.includes(v) ? null : `must be one of ${vals.map((x) => `'${x}'`).join(', ')}`);

/** Documentation table of a schema (for README / `--help`). */
export function describeSchema<C>(schema: Schema<C>): string {
  return (Object.entries(schema) as [string, FieldSpec<unknown>][])
    .map(([k, f]) => `${k} (default ${JSON.stringify(f.default)}${f.trl ? `; TRL: ${f.trl}` : ''}): ${f.doc}`)
    .join('\n');
}

// What every attention layer of one forward pass shares: position ids and the attention masks,
// built once per forward from the padding mask, the cache length and the sliding windows.
//
// Query i (absolute index past + i) may attend key j (absolute index j < past + T) when
//   j ≤ past + i                       causal
//   and keyMask[b, j] = 1              not padding
//   and past + i − j < window          only on sliding-window layers (Mistral), as transformers
// and, always, j = past + i (itself). That last rule changes nothing for real tokens (they attend to
// themselves anyway) but gives left-padding positions one key, so their rows are finite instead of
// NaN — a NaN there would poison real rows through 0·NaN in the next layer. Their outputs are
// meaningless and ignored, as in transformers.
// Fast paths: no padding and no cache → `isCausal` with no mask tensor (sdpa's own causal kernel); a
// single new token without padding attends to everything cached → no mask at all.
// Default position ids follow transformers' generate: cumsum(mask) − 1 with padding at 1, so
// left-padded rows start at 0 — forward and generate agree, and so do trainers' log-prob passes.
import { Tensor, arange, tidy, type Device } from '../tensor/index.js';
import type { KVCache } from '../generation/cache.js';

/** The sdpa arguments for one kind of layer. */
export interface MaskSpec {
  /** Boolean `[B|1, 1, T, Tk]` (true = attend), or null. */
  mask: Tensor | null;
  isCausal: boolean;
}

/** Per-forward context handed to every layer. */
export interface AttentionContext {
  /** `[B|1, T]` int64. */
  positionIds: Tensor;
  /** Masks by window size; key 0 = full causal attention. */
  masks: Map<number, MaskSpec>;
  cache: KVCache | null;
  /** Tokens already in the cache. */
  past: number;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v instanceof Tensor) return `a ${v.dtype} tensor of shape [${v.shape.join(', ')}]`;
  return Array.isArray(v) ? 'an array' : typeof v;
}

/** Checks `inputIds` `[B, T]` integer and returns [B, T]. */
export function checkInputIds(owner: string, ids: unknown): [number, number] {
  if (!(ids instanceof Tensor) || ids.ndim !== 2 || (ids.dtype !== 'int64' && ids.dtype !== 'int32')) {
    throw new TypeError(`${owner}: 'inputIds' must be an int64 tensor of shape [B, T], got ${describe(ids)}; build it with tensor(ids, { dtype: 'int64' })`);
  }
  const [b, t] = ids.shape;
  if (b < 1 || t < 1) throw new RangeError(`${owner}: 'inputIds' must have at least one row and one token, got shape [${b}, ${t}]`);
  return [b, t];
}

export interface ContextOptions {
  attentionMask?: Tensor | null;
  positionIds?: Tensor | null;
  cache?: KVCache | null;
  /** Sliding window per layer (null = full). */
  windows: readonly (number | null)[];
  device: Device;
  /** Skip argument checks and the all-ones test (generation's inner loop). */
  trusted?: boolean;
}

/**
 * Builds position ids and masks for `inputIds` of shape [B, T]. The returned tensors belong to the
 * caller's tidy scope.
 */
export function attentionContext(owner: string, b: number, t: number, o: ContextOptions): AttentionContext {
  const cache = o.cache ?? null;
  const past = cache ? cache.length : 0;
  const tk = past + t;
  let keyMask: Tensor | null = null;
  if (o.attentionMask !== undefined && o.attentionMask !== null) {
    const m = o.attentionMask;
    if (!o.trusted) {
      if (!(m instanceof Tensor) || m.ndim !== 2 || m.shape[0] !== b || m.shape[1] !== tk) {
        throw new RangeError(`${owner}: 'attentionMask' must have shape [${b}, ${tk}] (batch, cached + new tokens), got ${describe(m)}`);
      }
    }
    keyMask = m.dtype === 'bool' ? m : m.ne(0);
    // All ones: no padding, take the fast paths.
    if (!o.trusted && keyMask.all().item()) keyMask = null;
  }
  let positionIds: Tensor;
  if (o.positionIds !== undefined && o.positionIds !== null) {
    const p = o.positionIds;
    if (!o.trusted && (!(p instanceof Tensor) || p.ndim !== 2 || (p.shape[0] !== b && p.shape[0] !== 1) || p.shape[1] !== t
      || (p.dtype !== 'int64' && p.dtype !== 'int32'))) {
      throw new RangeError(`${owner}: 'positionIds' must be an int64 tensor of shape [${b}, ${t}] (or [1, ${t}]), got ${describe(p)}`);
    }
    positionIds = p;
  } else if (keyMask) {
    // transformers' generate: cumsum(mask) − 1, padding at 1; the last T columns.
    positionIds = tidy(() => {
      const m = keyMask!.long();
      return m.cumsum(1).sub(1).maskedFill(keyMask!.logicalNot(), 1).narrow(1, past, t);
    });
  } else {
    positionIds = arange(past, tk, 1, { device: o.device }).unsqueeze(0);
  }
  const masks = new Map<number, MaskSpec>();
  for (const win of new Set(o.windows.map((w) => w ?? 0))) masks.set(win, maskFor(keyMask, t, past, win, o.device));
  return { positionIds, masks, cache, past };
}

function maskFor(keyMask: Tensor | null, t: number, past: number, window: number, device: Device): MaskSpec {
  const tk = past + t;
  const windowActive = window > 0 && tk > window;
  if (!keyMask && !windowActive) {
    if (past === 0) return { mask: null, isCausal: t > 1 };
    if (t === 1) return { mask: null, isCausal: false };
  }
  const mask = tidy(() => {
    const q = arange(past, tk, 1, { device }).unsqueeze(1); //  [T, 1] absolute query index
    const k = arange(0, tk, 1, { device }).unsqueeze(0); //     [1, Tk]
    let allowed = k.le(q); //                                     [T, Tk]
    if (windowActive) allowed = allowed.logicalAnd(k.gt(q.sub(window)));
    if (!keyMask) return allowed.unsqueeze(0).unsqueeze(0); //    [1, 1, T, Tk]
    return allowed.unsqueeze(0).logicalAnd(keyMask.unsqueeze(1)) // [B, T, Tk]
      .logicalOr(k.eq(q).unsqueeze(0))
      .unsqueeze(1); //                                           [B, 1, T, Tk]
  });
  return { mask, isCausal: false };
}

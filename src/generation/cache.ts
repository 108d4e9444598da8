// KVCache: the keys and values of past tokens, per layer `[B, Hkv, T, D]`, so each decoding step
// runs the model on the new tokens only. Two storage modes:
//   preallocated (`maxLength` given): one `[B, Hkv, maxLength, D]` buffer per layer and k/v, written
//     in place (narrow(2, past, T).copy_) — no reallocation, O(T) bytes moved per step;
//   growing (no `maxLength`): each update concatenates (O(past) bytes moved per step).
// The model's forward reads `length` (tokens already cached) and calls `update` once per layer with
// the new keys/values; `advance` then moves `length` on. Attention reads a narrow view of the
// buffer, so nothing is copied for it. Buffers are created lazily on the first update (so the cache
// needs no model shapes up front), kept out of tidy scopes, and freed by `dispose()`.
import { Tensor, cat, empty, keep } from '../tensor/index.js';

export interface KVCacheOptions {
  /** Capacity in tokens (prompt + new tokens): preallocates the buffers. Omit to grow by concatenation. */
  maxLength?: number;
}

export class KVCache {
  /** Tokens cached so far (the position index of the next token in the cache). */
  length = 0;
  readonly maxLength: number | null;
  private keys: (Tensor | null)[] = [];
  private values: (Tensor | null)[] = [];

  constructor(opts: KVCacheOptions = {}) {
    const m = opts.maxLength;
    if (m !== undefined && (!Number.isInteger(m) || m < 1)) {
      throw new RangeError(`KVCache: 'maxLength' must be a positive integer, got ${String(m)}`);
    }
    this.maxLength = m ?? null;
  }

  /**
   * Stores the new keys/values `[B, Hkv, T, D]` of `layer` at positions [length, length + T) and returns
   * views of everything cached for that layer, `[B, Hkv, length + T, D]` (valid until the next update).
   */
  update(layer: number, k: Tensor, v: Tensor): { k: Tensor; v: Tensor } {
    const t = k.shape[2];
    const past = this.length;
    if (this.maxLength === null) {
      const pk = this.keys[layer] ?? null;
      const pv = this.values[layer] ?? null;
      const nk = keep(pk ? cat([pk, k], 2) : k.contiguous());
      const nv = keep(pv ? cat([pv, v], 2) : v.contiguous());
      pk?.dispose();
      pv?.dispose();
      this.keys[layer] = nk;
      this.values[layer] = nv;
      return { k: nk.narrow(2, 0, past + t), v: nv.narrow(2, 0, past + t) };
    }
    if (past + t > this.maxLength) {
      throw new RangeError(`KVCache: ${past + t} tokens exceed the cache's maxLength ${this.maxLength}; create it with a larger maxLength`);
    }
    let bk = this.keys[layer] ?? null;
    let bv = this.values[layer] ?? null;
    if (!bk || !bv) {
      const [b, h, , d] = k.shape;
      bk = keep(empty([b, h, this.maxLength, d], { dtype: k.dtype, device: k.device }));
      bv = keep(empty([b, v.shape[1], this.maxLength, v.shape[3]], { dtype: v.dtype, device: v.device }));
      this.keys[layer] = bk;
      this.values[layer] = bv;
    }
    const sk = bk.narrow(2, past, t);
    const sv = bv.narrow(2, past, t);
    sk.copy_(k);
    sv.copy_(v);
    sk.dispose();
    sv.dispose();
    return { k: bk.narrow(2, 0, past + t), v: bv.narrow(2, 0, past + t) };
  }

  /** Marks `t` more tokens as cached (the model's forward calls this after its last layer). */
  advance(t: number): void {
    this.length += t;
  }

  /** Frees the buffers; the cache can be reused from length 0. */
  reset(): void {
    for (const t of [...this.keys, ...this.values]) t?.dispose();
    this.keys = [];
    this.values = [];
    this.length = 0;
  }

  dispose(): void {
    this.reset();
  }
}

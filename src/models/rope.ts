// Rotary position embeddings (Su et al. 2021, RoFormer) in Hugging Face's "rotate half" layout:
//   invFreq[i] = 1 / θ^(2i/D),  i < D/2                      (float32, as transformers computes it)
//   angle[b, t, i] = pos[b, t] · invFreq[i];  emb = [angle, angle]                     [B, T, D]
//   rope(x) = x · cos(emb) + rotateHalf(x) · sin(emb),  rotateHalf([x1, x2]) = [−x2, x1]
// We fold rotateHalf's sign into the sine table (sinSigned = [−sin, sin]) and rotate with one
// `roll`, so applying it is four ops: x·cos + roll(x, D/2)·sinSigned (the same products and sum as
// transformers, hence the same rounding).
// Scaling ('rope_scaling'): 'linear' divides invFreq by `factor`; 'llama3' (Llama 3.1) divides the
// low-frequency band by `factor`, keeps the high band, and interpolates between them — the arithmetic
// of transformers' `_compute_llama3_parameters`, step by step in float32 (Math.fround after each op).
import { native } from '../native/addon.js';
import { Tensor, cat, type DType } from '../tensor/index.js';
import { w } from '../tensor/tensor.js';
import type { RopeConfig } from './config.js';

const f = Math.fround;

/** Inverse frequencies `[D/2]` as float32 values (transformers' arithmetic). */
export function ropeInvFreq(rope: RopeConfig, headDim: number): Float32Array {
  const half = headDim / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    // 1.0 / (base ** (arange(0, dim, 2).float() / dim)): exponent and power in float32.
    const e = f((2 * i) / headDim);
    inv[i] = f(1 / f(Math.pow(rope.theta, e)));
  }
  if (rope.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = f(inv[i] / f(rope.factor!));
  } else if (rope.type === 'llama3') {
    const factor = rope.factor!;
    const low = rope.lowFreqFactor!;
    const high = rope.highFreqFactor!;
    const old = rope.originalMaxPositionEmbeddings!;
    // Python floats, compared with the float32 tensor as float32 values.
    const lowWavelen = f(old / low);
    const highWavelen = f(old / high);
    const twoPi = f(2 * Math.PI);
    for (let i = 0; i < half; i++) {
      const x = inv[i];
      // `2π / inv_freq` is reciprocal(inv_freq) · 2π in torch; comparisons against doubles.
      const wavelen = f(f(1 / x) * twoPi);
      let llama = wavelen > lowWavelen ? f(x / f(factor)) : x;
      const smooth = f(f(f(f(1 / wavelen) * f(old)) - f(low)) / f(high - low));
      const smoothed = f(f(f(f(1 - smooth) * llama) / f(factor)) + f(smooth * llama));
      const medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      if (medium) llama = smoothed;
      inv[i] = llama;
    }
  }
  return inv;
}

let rollOp = -1;
/** `x.roll(shift, dim)` (aten::roll). */
export function roll(x: Tensor, shift: number, dim: number): Tensor {
  const n = native();
  if (rollOp < 0) rollOp = n.opHandle('aten::roll', '');
  return w(n.call(rollOp, x._h, [shift], [dim]));
}

export interface RopeTables {
  /** cos(emb) `[B|1, 1, T, D]` in the activation dtype. */
  cos: Tensor;
  /** [−sin, sin](emb) `[B|1, 1, T, D]` in the activation dtype. */
  sinSigned: Tensor;
}

/** cos / signed-sin tables for `positionIds` `[B, T]` (int64), in float32 then cast to `dtype`. */
export function ropeTables(invFreq: Tensor, positionIds: Tensor, dtype: DType): RopeTables {
  const freqs = positionIds.float().unsqueeze(-1).mul(invFreq); //  [B, T, D/2]
  const c = freqs.cos();
  const s = freqs.sin();
  let cos = cat([c, c], -1).unsqueeze(1); //                          [B, 1, T, D]
  let sinSigned = cat([s.neg(), s], -1).unsqueeze(1);
  if (dtype !== 'float32') {
    cos = cos.to(dtype);
    sinSigned = sinSigned.to(dtype);
  }
  return { cos, sinSigned };
}

/** Applies the rotation to `x` `[B, H, T, D]`. */
export function applyRope(x: Tensor, t: RopeTables): Tensor {
  const d = x.shape[3];
  return x.mul(t.cos).add(roll(x, d / 2, -1).mul(t.sinSigned));
}

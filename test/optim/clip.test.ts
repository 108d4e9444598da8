// clipGradNorm: total norm before clipping (like torch.nn.utils.clip_grad_norm_), in-place scaling.
import { expect, test } from 'vitest';
import { Tensor, optim, tensor, tidy } from '../../src/index.js';

function withGrads(grads: (number[] | null)[], fn: (ps: Tensor[]) => void): void {
  const ps = grads.map((g) => tensor(g ?? [0], { dtype: 'float64', requiresGrad: true }));
  tidy(() => grads.forEach((g, i) => { if (g) ps[i].grad = tensor(g, { dtype: 'float64' }); }));
  try { fn(ps); } finally { ps.forEach((p) => p.dispose()); }
}
const gradOf = (p: Tensor): number[] | null => tidy(() => (p.grad ? (p.grad.toArray() as number[]) : null));

test('L2: returns the global norm and scales every gradient by maxNorm / (norm + 1e-6)', () => {
  withGrads([[3, 4], [12], null], (ps) => {
    const total = optim.clipGradNorm(ps, 6.5);
    expect(total).toBeCloseTo(13, 12); // √(9 + 16 + 144)
    const k = 6.5 / (13 + 1e-6);
    const g0 = gradOf(ps[0])!;
    expect(g0[0]).toBeCloseTo(3 * k, 12);
    expect(g0[1]).toBeCloseTo(4 * k, 12);
    expect(gradOf(ps[1])![0]).toBeCloseTo(12 * k, 12);
    expect(gradOf(ps[2])).toBe(null); // parameters without a gradient are skipped
    expect(optim.clipGradNorm(ps, 100)).toBeCloseTo(6.5, 5); // already small: unchanged
    expect(gradOf(ps[1])![0]).toBeCloseTo(12 * k, 12);
  });
});

test('other norms: inf (max |g|) and L1', () => {
  withGrads([[3, -4], [-12]], (ps) => {
    expect(optim.clipGradNorm(ps, 1000, Infinity)).toBe(12);
    expect(optim.clipGradNorm(ps, 1000, 1)).toBeCloseTo(19, 12);
    optim.clipGradNorm(ps, 1.9, 1);
    expect(gradOf(ps[0])![1]).toBeCloseTo(-0.4, 6);
  });
  withGrads([null], (ps) => expect(optim.clipGradNorm(ps, 1)).toBe(0));
});

test('argument validation', () => {
  withGrads([[1]], (ps) => {
    expect(() => optim.clipGradNorm(ps, -1)).toThrow(/clipGradNorm: 'maxNorm' must be a finite number >= 0, got -1/);
    expect(() => optim.clipGradNorm(ps, 1, 0)).toThrow(/'normType' must be a number > 0 or Infinity, got 0/);
    expect(() => optim.clipGradNorm([ps[0], 'w' as unknown as Tensor], 1)).toThrow(/clipGradNorm: params\[1\] must be a Tensor, got string/);
    expect(() => optim.clipGradNorm(ps[0] as unknown as Tensor[], 1)).toThrow(/'params' must be an array of Tensors/);
  });
});

// Native memory stays flat over a long training loop (DESIGN.md "Memory and lifetime"), and bad input
// fails with a clear Error while the process keeps working.
import { describe, expect, test } from 'vitest';
import { Tensor, linear, manualSeed, memory, nn, ones, optim, randn, tensor, tidy } from '../../src/index.js';

class MLP extends nn.Module {
  readonly fc1 = this.registerModule('fc1', new nn.Linear(4, 16));
  readonly fc2 = this.registerModule('fc2', new nn.Linear(16, 1));
  forward(x: Tensor): Tensor { return this.fc2.forward(this.fc1.forward(x).relu()); }
}

describe('lifetime', () => {
  test('10,000 forward/backward/step iterations in tidy: live tensors back to baseline, RSS flat', async () => {
    manualSeed(0);
    const base = memory();
    const model = new MLP();
    const opt = new optim.AdamW(model.parameters(), { lr: 1e-3 });
    const x = randn([8, 4]);
    const y = randn([8, 1]);
    const iteration = (): number => tidy(() => {
      opt.zeroGrad();
      const loss = model.forward(x).sub(y).square().mean();
      loss.backward();
      optim.clipGradNorm(model.parameters(), 1.0);
      opt.step();
      return loss.item();
    });
    for (let i = 0; i < 200; i++) iteration(); // creates the optimizer state and warms the allocator
    const before = memory();
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    let last = 0;
    let rssHalf = 0;
    for (let i = 0; i < 10_000; i++) {
      last = iteration();
      // Yield to the event loop now and then, as a real (async) training loop does after every step:
      // Node runs the N-API finalizers of collected tensor handles from setImmediate, so a loop that
      // never yields keeps every disposed handle's small native box (~100 B each) until it ends.
      if (i % 100 === 99) await new Promise((r) => setImmediate(r));
      if (i === 4_999) rssHalf = process.memoryUsage().rss;
    }
    const ms = performance.now() - t0;
    const rss1 = process.memoryUsage().rss;
    const rssGrowthMb = (rss1 - rss0) / 2 ** 20;
    // A leak grows linearly; warm-up (JIT code, malloc arenas, V8 heap sizing) is front-loaded, so the
    // second half's growth is the better leak signal.
    console.log(`lifetime: 10,000 iterations in ${(ms / 1000).toFixed(2)} s (${(ms / 10).toFixed(1)} µs each); RSS growth ${rssGrowthMb.toFixed(2)} MB (last 5,000: ${((rss1 - rssHalf) / 2 ** 20).toFixed(2)} MB); final loss ${last.toFixed(4)}`);
    expect(memory().liveTensors).toBe(before.liveTensors);
    expect(memory().bytes.cpu).toBe(before.bytes.cpu);
    expect(rssGrowthMb).toBeLessThan(50);
    // The second half's RSS growth is printed, not asserted: inside a vitest worker on a loaded 2-core
    // machine it ranged 0.7–11 MB (worker and V8 heap sizing), while the same loop in plain Node stays
    // within ±1 MB over 30,000 iterations (`npm run bench -- lifetime`, BENCHMARKS.md). The native
    // accounting above is exact and is the leak check.
    opt.dispose();
    model.dispose();
    x.dispose();
    y.dispose();
    expect(memory().liveTensors).toBe(base.liveTensors);
    expect(memory().bytes.cpu).toBe(base.bytes.cpu);
  });
});

describe('bad input: a clear Error, and the process keeps running', () => {
  const stillWorks = (): void => expect(tidy(() => ones([2]).add(1).sum().item())).toBe(4);

  test('matmul shape mismatch names the op and both shapes', () => {
    tidy(() => expect(() => ones([2, 3]).matmul(ones([2, 3]))).toThrow(/aten::matmul: .*2x3 and 2x3/));
    stillWorks();
    const lin = new nn.Linear(3, 2);
    tidy(() => expect(() => lin.forward(ones([5, 4]))).toThrow(/aten::linear: .*5x4 and 3x2/));
    lin.dispose();
    stillWorks();
  });

  test('a disposed tensor is reported as such, including a disposed module', () => {
    const d = ones([2]);
    d.dispose();
    expect(() => d.add(1)).toThrow(/disposed tensor/);
    tidy(() => expect(() => ones([2]).mul(d)).toThrow(/'other' is a disposed tensor/));
    const lin = new nn.Linear(2, 2);
    lin.dispose();
    tidy(() => expect(() => lin.forward(ones([1, 2]))).toThrow(/disposed tensor/));
    const p = tensor([1], { requiresGrad: true });
    const opt = new optim.SGD([p], { lr: 0.1 });
    opt.dispose();
    expect(() => opt.zeroGrad()).toThrow(/SGD\.zeroGrad: the optimizer was disposed/);
    p.dispose();
    stillWorks();
  });

  test('wrong dtype: integer tensors into float ops', () => {
    tidy(() => {
      const ints = tensor([[1, 2]], { dtype: 'int64' });
      expect(() => ints.softmax(-1)).toThrow(/aten::softmax.*not implemented for 'Long'/);
      expect(() => linear(ints, ones([3, 2]))).toThrow(/aten::linear: expected m1 and m2 to have the same dtype/);
      const lin = new nn.Linear(2, 3);
      expect(() => lin.forward(ints)).toThrow(/Linear\.forward: 'input' has dtype int64 but the layer's weights are float32/);
      const emb = new nn.Embedding(4, 2);
      expect(() => emb.forward(tensor([0.5]))).toThrow(/Embedding\.forward: 'indices' must be an int64 or int32 tensor, got float32/);
      lin.dispose(); emb.dispose();
    });
    stillWorks();
  });

  test('non-tensor arguments name the op and the argument', () => {
    expect(() => linear('x' as unknown as Tensor, ones([3, 2]))).toThrow(/linear: argument 'input' must be a Tensor, got a string/);
    tidy(() => expect(() => ones([2]).add({} as unknown as Tensor)).toThrow(/add: argument 'other' must be a Tensor, a number or a boolean/));
    const rn = new nn.RMSNorm(2);
    expect(() => rn.forward([1, 2] as unknown as Tensor)).toThrow(/RMSNorm\.forward: 'input' must be a Tensor, got an array/);
    rn.dispose();
    expect(() => new optim.AdamW([1 as unknown as Tensor])).toThrow(/AdamW: params\[0\] must be a \{ params: Tensor\[\], lr\?, weightDecay\? \} group/);
    expect(() => optim.clipGradNorm([null as unknown as Tensor], 1)).toThrow(/clipGradNorm: params\[0\] must be a Tensor, got null/);
    stillWorks();
  });

  test('errors inside tidy leak nothing', () => {
    const base = memory().liveTensors;
    for (let i = 0; i < 3; i++) {
      expect(() => tidy(() => randn([4, 3]).matmul(randn([4, 3])))).toThrow(/matmul/);
    }
    expect(memory().liveTensors).toBe(base);
  });
});

// End-to-end learning: a tiny MLP learns XOR with AdamW; a linear regression fits with SGD + momentum.
import { expect, test } from 'vitest';
import { Tensor, manualSeed, memory, nn, optim, randn, tensor, tidy } from '../../src/index.js';

test('a tiny MLP learns XOR with AdamW', () => {
  manualSeed(0);
  const base = memory().liveTensors;
  const model = new nn.Sequential(new nn.Linear(2, 8), new nn.Tanh(), new nn.Linear(8, 1));
  const opt = new optim.AdamW(model.parameters(), { lr: 0.05 });
  const x = tensor([[0, 0], [0, 1], [1, 0], [1, 1]]);
  const y = tensor([[0], [1], [1], [0]]);
  // Binary cross-entropy with logits: −[y·logσ(z) + (1−y)·logσ(−z)].
  const bce = (z: Tensor): Tensor => y.mul(z.logSigmoid()).add(y.rsub(1).mul(z.neg().logSigmoid())).mean().neg();
  let loss = Infinity;
  let firstBelow = -1;
  for (let step = 1; step <= 300; step++) {
    loss = tidy(() => {
      opt.zeroGrad();
      const l = bce(model.forward(x));
      l.backward();
      opt.step();
      return l.item();
    });
    if (firstBelow < 0 && loss < 0.05) firstBelow = step;
  }
  console.log(`XOR: loss < 0.05 first at step ${firstBelow}; final loss ${loss.toExponential(3)} after 300 AdamW steps`);
  expect(loss).toBeLessThan(0.05);
  tidy(() => {
    const pred = model.forward(x).sigmoid().gt(0.5).float();
    expect(pred.toArray()).toEqual([[0], [1], [1], [0]]);
  });
  opt.dispose();
  model.dispose();
  x.dispose();
  y.dispose();
  expect(memory().liveTensors).toBe(base);
});

test('linear regression fits with SGD + momentum', () => {
  manualSeed(1);
  const x = randn([256, 2], { dtype: 'float64' });
  const trueW = tensor([[3], [-2]], { dtype: 'float64' });
  const y = tidy(() => x.matmul(trueW).add(0.5).add(randn([256, 1], { dtype: 'float64' }).mul(0.01)));
  const model = new nn.Linear(2, 1, { dtype: 'float64' });
  const opt = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
  let loss = Infinity;
  for (let i = 0; i < 200; i++) {
    loss = tidy(() => {
      opt.zeroGrad();
      const l = model.forward(x).sub(y).square().mean();
      l.backward();
      opt.step();
      return l.item();
    });
  }
  console.log(`regression: mse ${loss.toExponential(3)} after 200 SGD+momentum steps`);
  expect(loss).toBeLessThan(2e-4);
  const [w0, w1] = (model.weight.toArray() as number[][])[0];
  expect(w0).toBeCloseTo(3, 2);
  expect(w1).toBeCloseTo(-2, 2);
  expect(model.bias!.item()).toBeCloseTo(0.5, 2);
  opt.dispose();
  model.dispose();
  for (const t of [x, trueW, y]) t.dispose();
});

// `llmrl demo` (npm start): for now a small, real training run — an MLP fitted with AdamW to
// y = sin(3x)·x on [-2, 2], printing its falling loss. The RL demo (PPO, DPO, GRPO, GSPO side by side)
// replaces it once the trainers exist.
import { linspaceColumn } from './data.js';
import * as nn from '../nn/index.js';
import * as optim from '../optim/index.js';
import { manualSeed, memory, noGrad, tidy, type Tensor } from '../tensor/index.js';

class MLP extends nn.Module {
  readonly fc1: nn.Linear;
  readonly fc2: nn.Linear;
  readonly fc3: nn.Linear;
  constructor(hidden: number) {
    super();
    this.fc1 = this.registerModule('fc1', new nn.Linear(1, hidden));
    this.fc2 = this.registerModule('fc2', new nn.Linear(hidden, hidden));
    this.fc3 = this.registerModule('fc3', new nn.Linear(hidden, 1));
  }
  forward(x: Tensor): Tensor {
    return this.fc3.forward(this.fc2.forward(this.fc1.forward(x).tanh()).tanh());
  }
}

export function demo(opts: { steps: number; seed: number }): { first: number; last: number } {
  manualSeed(opts.seed);
  const { x, y } = linspaceColumn(-2, 2, 256, (v) => Math.sin(3 * v) * v);
  const model = new MLP(64);
  const opt = new optim.AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0 });
  const sched = optim.getCosineScheduleWithWarmup(opt, Math.floor(opts.steps / 10), opts.steps);
  console.log(`llmrl demo: fitting y = sin(3x)·x with a ${model.numParameters()}-parameter MLP, AdamW, ${opts.steps} steps`);
  let first = NaN;
  let last = NaN;
  const t0 = Date.now();
  for (let step = 1; step <= opts.steps; step++) {
    last = tidy(() => {
      opt.zeroGrad();
      const loss = model.forward(x).sub(y).square().mean();
      loss.backward();
      opt.step();
      sched.step();
      return loss.item();
    });
    if (step === 1) first = last;
    if (step === 1 || step % Math.max(1, Math.floor(opts.steps / 12)) === 0 || step === opts.steps) {
      console.log(`step ${String(step).padStart(5)}  loss ${last.toFixed(6)}  lr ${opt.lr.toExponential(2)}`);
    }
  }
  const evalLoss = noGrad(() => tidy(() => model.forward(x).sub(y).square().mean().item()));
  console.log(`done in ${((Date.now() - t0) / 1000).toFixed(2)} s: loss ${first.toFixed(4)} → ${evalLoss.toFixed(4)} (${(first / evalLoss).toFixed(0)}× lower); live tensors ${memory().liveTensors}`);
  model.dispose();
  opt.dispose();
  x.dispose();
  y.dispose();
  return { first, last: evalLoss };
}

// Schedules reproduce Hugging Face transformers' lr lambdas at given steps; LambdaLR mechanics.
import { describe, expect, test } from 'vitest';
import { Tensor, optim, tensor } from '../../src/index.js';

function withOptimizer(fn: (opt: optim.AdamW) => void, groups = [{ lr: 2 }]): void {
  const ps: Tensor[] = groups.map(() => tensor([1], { requiresGrad: true }));
  const opt = new optim.AdamW(groups.map((g, i) => ({ params: [ps[i]], lr: g.lr })));
  try { fn(opt); } finally { opt.dispose(); ps.forEach((p) => p.dispose()); }
}

/** The lr after advancing `sched` to each of `steps` (ascending), as a multiple of base lr 2. */
function multipliersAt(sched: optim.LambdaLR, steps: number[]): number[] {
  const out: number[] = [];
  for (const s of steps) {
    while (sched.lastStep < s) sched.step();
    out.push(sched.getLastLr()[0] / 2);
  }
  return out;
}

const expectAll = (got: number[], want: number[]): void => got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 12));

describe('HF schedules', () => {
  test('constructing applies λ(0): warmup starts at lr 0', () => withOptimizer((opt) => {
    const s = optim.getLinearScheduleWithWarmup(opt, 10, 100);
    expect(s.lastStep).toBe(0);
    expect(opt.lr).toBe(0);
    s.step();
    expect(opt.lr).toBeCloseTo(0.2, 12);
    expect(opt.baseLrs).toEqual([2]);
  }));

  test('linear: warmup 10, total 100 at steps 0, 5, 10, 55, 100, 120', () => withOptimizer((opt) => {
    const s = optim.getLinearScheduleWithWarmup(opt, 10, 100);
    // s < w: s / w;  else max(0, (T − s) / (T − w))
    expectAll(multipliersAt(s, [0, 5, 10, 55, 100, 120]), [0, 0.5, 1, 0.5, 0, 0]);
  }));

  test('cosine: warmup 10, total 100 (half cycle) and 2 cycles', () => {
    withOptimizer((opt) => {
      const s = optim.getCosineScheduleWithWarmup(opt, 10, 100);
      // ½(1 + cos(π · 2c · progress)) with c = 0.5: progress 0.2 at step 28 → ½(1 + cos(0.2π))
      expectAll(multipliersAt(s, [0, 5, 10, 28, 55, 100]), [0, 0.5, 1, 0.9045084971874737, 0.5, 0]);
    });
    withOptimizer((opt) => {
      const s = optim.getCosineScheduleWithWarmup(opt, 0, 100, 2);
      // 2 cycles: back to 1 at progress 0.5, clamped at 0 never negative
      expectAll(multipliersAt(s, [0, 25, 50, 75, 100]), [1, 0, 1, 0, 1]);
    });
  });

  test('constant, constant with warmup', () => {
    withOptimizer((opt) => expectAll(multipliersAt(optim.getConstantSchedule(opt), [0, 1, 50]), [1, 1, 1]));
    withOptimizer((opt) => expectAll(multipliersAt(optim.getConstantScheduleWithWarmup(opt, 4), [0, 1, 2, 3, 4, 9]), [0, 0.25, 0.5, 0.75, 1, 1]));
    // warmup 0 → max(1, 0) guards the division: λ = 1 from the start
    withOptimizer((opt) => expectAll(multipliersAt(optim.getLinearScheduleWithWarmup(opt, 0, 10), [0, 5]), [1, 0.5]));
  });

  test('createScheduler resolves warmupSteps / warmupRatio like HF get_warmup_steps', () => {
    withOptimizer((opt) => {
      const s = optim.createScheduler(opt, { type: 'linear', warmupRatio: 0.1, totalSteps: 95 }); // ceil(9.5) = 10
      expectAll(multipliersAt(s, [5, 10, 95]), [0.5, 1, 0]);
    });
    withOptimizer((opt) => {
      const s = optim.createScheduler(opt, { type: 'cosine', warmupSteps: 10, warmupRatio: 0.5, totalSteps: 100 });
      expectAll(multipliersAt(s, [5, 55]), [0.5, 0.5]); // warmupSteps > 0 wins
    });
    withOptimizer((opt) => {
      expectAll(multipliersAt(optim.createScheduler(opt, { type: 'constant' }), [0, 7]), [1, 1]);
      expect(() => optim.createScheduler(opt, { type: 'linear' })).toThrow(/'linear' needs 'totalSteps'/);
      expect(() => optim.createScheduler(opt, { type: 'exp' as 'linear', totalSteps: 1 })).toThrow(/'type' must be 'constant', 'linear' or 'cosine', got "exp"/);
      expect(() => optim.getLinearScheduleWithWarmup(opt, -1, 10)).toThrow(/'numWarmupSteps' must be an integer >= 0, got -1/);
    });
  });
});

describe('LambdaLR', () => {
  test('scales every group from its own base lr; per-group lambdas', () => withOptimizer((opt) => {
    const s = optim.getLinearScheduleWithWarmup(opt, 2, 10);
    s.step();
    expect(opt.groupLrs).toEqual([0.5, 0.05]);
    expect(s.getLastLr()).toEqual([0.5, 0.05]);
    const t = new optim.LambdaLR(opt, [() => 1, (k) => 0.5 ** k]);
    t.step(); t.step();
    expect(opt.groupLrs).toEqual([1, 0.025]);
    expect(() => new optim.LambdaLR(opt, [() => 1])).toThrow(/expected 2 lr lambdas \(one per param group\), got 1/);
    expect(() => new optim.LambdaLR(opt, () => NaN)).toThrow(/lrLambda\(0\) returned NaN/);
  }, [{ lr: 1 }, { lr: 0.1 }]));

  test('stateDict / loadStateDict resumes the schedule', () => {
    let saved: optim.SchedulerStateDict | undefined;
    let lrAt37 = 0;
    withOptimizer((opt) => {
      const s = optim.getCosineScheduleWithWarmup(opt, 10, 100);
      for (let i = 0; i < 37; i++) s.step();
      saved = s.stateDict();
      lrAt37 = opt.lr;
      s.step();
    });
    expect(saved).toEqual({ lastStep: 37, baseLrs: [2] });
    withOptimizer((opt) => {
      const s = optim.getCosineScheduleWithWarmup(opt, 10, 100);
      s.loadStateDict(saved!);
      expect(s.lastStep).toBe(37);
      expect(opt.lr).toBe(lrAt37);
      s.step();
      expect(opt.lr).toBeCloseTo(2 * 0.5 * (1 + Math.cos(Math.PI * (28 / 90))), 12);
      expect(() => s.loadStateDict({ lastStep: -3, baseLrs: [2] })).toThrow(/lastStep: integer >= 0/);
    });
  });
});

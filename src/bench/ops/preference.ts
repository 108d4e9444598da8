// Benchmarks for the §7–8 pairwise losses (ALGORITHMS.md): preferenceLoss (DPO sigmoid, with cDPO
// smoothing) and bradleyTerryLoss, each against the same math composed from plain llmrl tensor ops as
// TRL writes it (loss plus the logged metrics), forward and forward+backward, on B pairs of float32.
// These are tiny [B] ops: the numbers are per-call overhead (kernel launches, allocations), not bandwidth.
import type { BenchCase } from '../ops.js';
import * as ops from '../../ops/index.js';
import { randn, type Tensor } from '../../tensor/index.js';

const BETA = 0.1;
const EPS = 0.1;

// TRL's DPO sigmoid loss with label smoothing, and its rewards/* metrics (detached).
function composedDpo(c: Tensor, r: Tensor, rc: Tensor, rr: Tensor): Tensor {
  const xc = c.sub(rc);
  const xr = r.sub(rr);
  const z = xc.sub(xr).mul(BETA);
  const loss = z.logSigmoid().mul(-(1 - EPS)).sub(z.neg().logSigmoid().mul(EPS)).mean();
  const rewC = xc.detach().mul(BETA);
  const rewR = xr.detach().mul(BETA);
  rewC.mean(); rewR.mean(); rewC.gt(rewR).float().mean(); rewC.sub(rewR).mean();
  return loss;
}

// TRL's RewardTrainer loss with a margin, and its accuracy/margin metrics.
function composedBt(c: Tensor, r: Tensor, m: Tensor): Tensor {
  const loss = c.sub(r).sub(m).logSigmoid().neg().mean();
  const cd = c.detach();
  const rd = r.detach();
  cd.gt(rd).float().mean(); cd.sub(rd).mean();
  return loss;
}

export function cases(quick: boolean): BenchCase[] {
  const B = quick ? 64 : 4096;
  const repeats = quick ? 5 : 50;
  let c: Tensor, r: Tensor, rc: Tensor, rr: Tensor, m: Tensor;
  const inputs = (grad: boolean) => () => {
    c = randn([B]).sub(60).requiresGrad_(grad);
    r = randn([B]).sub(60).requiresGrad_(grad);
    rc = randn([B]).sub(60);
    rr = randn([B]).sub(60);
    m = randn([B]).abs();
    return () => { for (const t of [c, r, rc, rr, m]) t.dispose(); };
  };
  const clear = () => { c.grad = null; r.grad = null; };
  return [
    {
      name: `preferenceLoss sigmoid fwd [${B}] float32`,
      setup: inputs(false),
      repeats,
      variants: [
        { variant: 'composed', fn: () => { composedDpo(c, r, rc, rr); } },
        { variant: 'fused', fn: () => { ops.preferenceLoss(c, r, rc, rr, { beta: BETA, labelSmoothing: EPS }); } },
      ],
    },
    {
      name: `preferenceLoss sigmoid fwd+bwd [${B}] float32`,
      setup: inputs(true),
      repeats,
      variants: [
        { variant: 'composed', fn: () => { composedDpo(c, r, rc, rr).backward(); clear(); } },
        { variant: 'fused', fn: () => { ops.preferenceLoss(c, r, rc, rr, { beta: BETA, labelSmoothing: EPS }).loss.backward(); clear(); } },
      ],
    },
    {
      name: `bradleyTerryLoss fwd [${B}] float32`,
      setup: inputs(false),
      repeats,
      variants: [
        { variant: 'composed', fn: () => { composedBt(c, r, m); } },
        { variant: 'fused', fn: () => { ops.bradleyTerryLoss(c, r, { margin: m }); } },
      ],
    },
    {
      name: `bradleyTerryLoss fwd+bwd [${B}] float32`,
      setup: inputs(true),
      repeats,
      variants: [
        { variant: 'composed', fn: () => { composedBt(c, r, m).backward(); clear(); } },
        { variant: 'fused', fn: () => { ops.bradleyTerryLoss(c, r, { margin: m }).loss.backward(); clear(); } },
      ],
    },
  ];
}

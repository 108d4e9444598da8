// `llmrl bench` (npm run bench): the cost of one small op call through the binding, in µs, against
// PyTorch eager from Python in the same run when a Python with torch is available (the bar in
// DESIGN.md: ~1.2 µs here). Timing is median-of-repeats; results print as a Markdown table.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { native } from '../native/addon.js';
import { ones, tidy } from '../tensor/index.js';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** µs per iteration of `body` (which runs `inner` op calls), median of `repeats` rounds. */
function time(body: () => void, inner: number, repeats = 7): number {
  body(); // warm up
  const rounds: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = process.hrtime.bigint();
    body();
    rounds.push(Number(process.hrtime.bigint() - t0) / 1e3 / inner);
  }
  return median(rounds);
}

function pythonBaseline(n: number): { us: number; python: string; torch: string } | null {
  const py = process.env.LLMRL_BENCH_PYTHON ?? 'python3';
  const code = `
import time, torch, sys
torch.set_num_threads(${native().getNumThreads()})
a = torch.ones(1); b = torch.ones(1)
for _ in range(1000): a + b
rounds = []
for _ in range(7):
    t = time.perf_counter()
    for _ in range(${n}): a + b
    rounds.append((time.perf_counter() - t) / ${n} * 1e6)
rounds.sort()
print(rounds[3], sys.version.split()[0], torch.__version__)
`;
  try {
    const out = execFileSync(py, ['-c', code], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split(' ');
    return { us: Number(out[0]), python: out[1], torch: out[2] };
  } catch {
    return null;
  }
}

export function benchOpCall(opts: { json?: boolean } = {}): void {
  const n = native();
  const N = 100_000;
  const add = n.opHandle('aten::add', 'Tensor');
  const a = ones([1]);
  const b = ones([1]);
  const rows: { case: string; us: number }[] = [];
  rows.push({ case: 'native call (aten::add, 1 element) + dispose', us: time(() => { for (let i = 0; i < N; i++) n.dispose(n.call(add, a._h, b._h)); }, N) });
  rows.push({ case: 'Tensor.add + dispose()', us: time(() => { for (let i = 0; i < N; i++) a.add(b).dispose(); }, N) });
  rows.push({ case: 'Tensor.add inside tidy (100 per scope)', us: time(() => { for (let i = 0; i < N / 100; i++) tidy(() => { for (let j = 0; j < 100; j++) a.add(b); }); }, N) });
  rows.push({ case: 'Tensor.add, chained (x = x.add(b)), tidy', us: time(() => { for (let i = 0; i < N / 100; i++) tidy(() => { let x = a; for (let j = 0; j < 100; j++) x = x.add(b); }); }, N) });
  const py = pythonBaseline(N);
  a.dispose();
  b.dispose();
  const machine = `${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores, Node ${process.version}, libtorch ${n.buildInfo.torchVersion}, ${n.getNumThreads()} threads`;
  if (opts.json) {
    console.log(JSON.stringify({ machine, rows, python: py }, null, 2));
    return;
  }
  console.log(`Small-op call overhead (${machine})\n`);
  console.log('| case | µs per call | vs PyTorch eager |');
  console.log('|---|---:|---:|');
  for (const r of rows) console.log(`| ${r.case} | ${r.us.toFixed(2)} | ${py ? (r.us / py.us).toFixed(2) + '×' : 'n/a'} |`);
  if (py) console.log(`| PyTorch eager \`a + b\` from Python ${py.python} (torch ${py.torch}), same run | ${py.us.toFixed(2)} | 1.00× |`);
  else console.log('\n(no Python with torch found for the baseline: set LLMRL_BENCH_PYTHON to one)');
}

/**
 * RSS over a long training loop in plain Node (no test runner around it): a small MLP, forward +
 * backward + clip + AdamW inside tidy, yielding to the event loop every 100 steps as a trainer does.
 * Prints RSS every 5,000 iterations; run with `node --expose-gc` to also print it after a full GC.
 */
export async function benchLifetime(opts: { iterations?: number } = {}): Promise<void> {
  const { nn, optim } = await import('../index.js');
  const { manualSeed, memory, randn } = await import('../tensor/index.js');
  manualSeed(0);
  const fc1 = new nn.Linear(4, 16);
  const fc2 = new nn.Linear(16, 1);
  const params = [...fc1.parameters(), ...fc2.parameters()];
  const opt = new optim.AdamW(params, { lr: 1e-3 });
  const x = randn([8, 4]);
  const y = randn([8, 1]);
  const step = () => tidy(() => {
    opt.zeroGrad();
    const loss = fc2.forward(fc1.forward(x).relu()).sub(y).square().mean();
    loss.backward();
    optim.clipGradNorm(params, 1);
    opt.step();
  });
  const mb = () => (process.memoryUsage().rss / 2 ** 20).toFixed(1);
  const total = opts.iterations ?? 30_000;
  const gc = (globalThis as { gc?: () => void }).gc;
  console.log(`lifetime: ${total} iterations of a 4→16→1 MLP (forward, backward, clip, AdamW) in tidy`);
  const t0 = performance.now();
  for (let i = 1; i <= total; i++) {
    step();
    if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    if (i % 5000 === 0) {
      const before = mb();
      if (gc) { gc(); await new Promise((r) => setImmediate(r)); }
      console.log(`  ${String(i).padStart(6)}: RSS ${before} MB${gc ? ` (${mb()} MB after GC)` : ''}, live tensors ${memory().liveTensors}`);
    }
  }
  console.log(`  ${((performance.now() - t0) / total * 1000).toFixed(0)} µs per iteration`);
  for (const t of [...params, x, y]) t.dispose();
  opt.dispose();
}

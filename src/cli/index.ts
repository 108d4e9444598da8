#!/usr/bin/env node
// llmrl command line: doctor, bench, demo (later: train <algo>, generate, eval).
import { Command } from 'commander';
import { doctor } from './doctor.js';
import { benchLifetime, benchOpCall } from './bench.js';
import { benchOps } from '../bench/ops.js';
import { demo } from './demo.js';

const program = new Command();
program
  .name('llmrl')
  .description('Post-train language models with reinforcement learning (PPO, DPO, GRPO, GSPO) from Node.js, on libtorch.')
  .showHelpAfterError();

program
  .command('doctor')
  .description('show what llmrl found: Node, libtorch, the native addon, CUDA; with fixes for failures')
  .option('--json', 'machine-readable output')
  .action(async (o: { json?: boolean }) => {
    const ok = await doctor(o);
    process.exitCode = ok ? 0 : 1;
  });

program
  .command('bench')
  .description('benchmarks: `opcall` (one small op through the binding) or `ops` (fused ops vs composed)')
  .argument('[suite]', 'opcall | ops | lifetime', 'opcall')
  .option('--quick', 'small shapes (ops suite)')
  .option('--filter <text>', 'only cases whose name contains text (ops suite)')
  .option('--json', 'machine-readable output')
  .action(async (suite: string, o: { json?: boolean; quick?: boolean; filter?: string }) => {
    if (suite === 'opcall') benchOpCall(o);
    else if (suite === 'ops') await benchOps(o);
    else if (suite === 'lifetime') await benchLifetime();
    else throw new Error(`bench: unknown suite '${suite}'; expected 'opcall', 'ops' or 'lifetime'`);
  });

program
  .command('demo')
  .description('the built-in demo: a small training run that prints its falling loss')
  .option('--steps <n>', 'training steps', (v) => Number.parseInt(v, 10), 300)
  .option('--seed <n>', 'random seed', (v) => Number.parseInt(v, 10), 0)
  .action((o: { steps: number; seed: number }) => {
    demo(o);
  });

program.parseAsync(process.argv).catch((e: Error) => {
  console.error(`llmrl: ${e.message}`);
  process.exit(1);
});

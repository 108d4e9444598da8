// vitest setup, run in every worker: one intra-op thread per worker. Two workers on two cores with
// two OpenMP threads each oversubscribe the CPU (tiny-model steps went from ~15 ms to ~2 s under load).
import { setNumThreads } from '../src/index.js';

setNumThreads(1);

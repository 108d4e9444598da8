// Grad modes and memory accounting: noGrad / enableGrad / inferenceMode run a synchronous function
// with libtorch's thread-local mode set and restore it afterwards, even when fn throws.
import { native } from '../native/addon.js';

function refuseAsync(what: string, r: unknown): void {
  if (r && typeof (r as { then?: unknown }).then === 'function') {
    throw new TypeError(`${what}: the function returned a Promise; the mode cannot span an await — call ${what} inside each synchronous step`);
  }
}

/** Runs `fn` with gradient recording off (PyTorch's `torch.no_grad()`). */
export function noGrad<T>(fn: () => T): T {
  const prev = native().setGradEnabled(false);
  try {
    const r = fn();
    refuseAsync('noGrad', r);
    return r;
  } finally {
    native().setGradEnabled(prev);
  }
}

/** Runs `fn` with gradient recording on (inside a noGrad block). */
export function enableGrad<T>(fn: () => T): T {
  const prev = native().setGradEnabled(true);
  try {
    const r = fn();
    refuseAsync('enableGrad', r);
    return r;
  } finally {
    native().setGradEnabled(prev);
  }
}

export function isGradEnabled(): boolean {
  return native().isGradEnabled();
}

/** Runs `fn` in inference mode: no graph, no version counters; tensors made here never need grad. */
export function inferenceMode<T>(fn: () => T): T {
  native().enterInferenceMode();
  try {
    const r = fn();
    refuseAsync('inferenceMode', r);
    return r;
  } finally {
    native().exitInferenceMode();
  }
}

export interface MemoryInfo {
  /** Tensor handles not yet disposed or collected. */
  liveTensors: number;
  /** Bytes of the storages those handles reference, per device (each storage counted once). */
  bytes: { cpu: number; cuda?: number };
}

/** Live tensors and bytes per device (DESIGN.md "Memory and lifetime"). */
export function memory(): MemoryInfo {
  return native().memory();
}

/** Sets the number of libtorch intra-op threads. */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`setNumThreads: 'n' must be a positive integer, got ${n}`);
  native().setNumThreads(n);
}
export function getNumThreads(): number {
  return native().getNumThreads();
}

export interface MemoryStats {
  /** Bytes allocated through libtorch's CPU allocator: now, and the most since the last reset. */
  cpu: { current: number; peak: number };
}

/** Allocator-level byte counts (every CPU tensor, including autograd's saved tensors). */
export function memoryStats(): MemoryStats {
  return native().memoryStats();
}

/** Starts a new peak measurement: peak = current. */
export function resetPeakMemory(): void {
  native().resetPeakMemory();
}

import { Writable } from 'node:stream';
import path from 'node:path';
import { afterEach, expect, test, vi } from 'vitest';
import { formatDuration } from '../../src/cli/format.js';
import { barLine, createProgress, isInteractive, noteAboveProgress } from '../../src/cli/progress.js';
import { runTrain } from '../../src/cli/train.js';

afterEach(() => vi.restoreAllMocks());

/** A terminal stand-in: records what is written; isTTY and columns like a tty.WriteStream. */
class FakeTty extends Writable {
  isTTY = true;
  columns: number;
  chunks: string[] = [];
  constructor(columns = 100) {
    super();
    this.columns = columns;
  }
  override _write(chunk: Buffer | string, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(String(chunk));
    cb();
  }
  get text(): string {
    return this.chunks.join('');
  }
}

const ESC = '\x1b';
/** What a terminal would show on the bar's line: the text after the last cursor-to-column-1. */
function frames(out: string): string[] {
  return out.split(`${ESC}[1G`).map((f) => f.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')).filter((f) => f.trim() !== '');
}

const M = { 'reward/mean': 0.41, 'kl/mean': 0.0031, loss: 0.123, 'perf/tokensPerSec': 850.4, 'policy/entropy': 2.5 };

function clock(stepMs: number): () => number {
  let t = 0;
  return () => (t += stepMs);
}

test('TTY: one bar line with step, bar, metrics and ETA, redrawn in place; stop ends the line', () => {
  const tty = new FakeTty(100);
  const log = vi.fn();
  const p = createProgress({ total: 600, tty: true, stream: tty, log, now: clock(120) });
  expect(p.mode).toBe('tty');
  expect(frames(tty.text).at(-1)).toMatch(/^step 0\/600 \[░+\] 0% eta --$/); // drawn at once, before the first step
  for (let s = 1; s <= 12; s++) p.update(s, M);
  const shown = frames(tty.text);
  const last = shown.at(-1)!;
  expect(last).toMatch(/^step 12\/600 \[█+░+\] 2% reward=0\.41 kl=0\.0031 loss=0\.123 tok\/s=850 eta 1m1\ds$/);
  expect(last.length).toBeLessThanOrEqual(100 - 3);
  // redrawn in place: every frame starts with cursor-to-column-1 and clears to the right; no newline yet
  expect(shown.length).toBeGreaterThanOrEqual(13);
  expect(tty.text).toContain(`${ESC}[1G`);
  expect(tty.text).toContain(`${ESC}[0K`);
  expect(tty.text).not.toContain('\n');
  expect(shown.map((f) => /^step (\d+)\//.exec(f)?.[1])).toContain('7');
  expect(log).not.toHaveBeenCalled();
  p.stop();
  expect(tty.text.endsWith('\n')).toBe(true);
  const n = tty.chunks.length;
  p.update(13, M);
  p.stop();
  expect(tty.chunks.length).toBe(n); // stopped: no more drawing, stop is idempotent
});

test('TTY: note() prints above the bar and the bar comes back; narrow terminals drop metrics, not the ETA', () => {
  const tty = new FakeTty(100);
  const p = createProgress({ total: 10, tty: true, stream: tty, log: () => {}, now: clock(1000) });
  p.update(1, M);
  expect(noteAboveProgress('llmrl: stopping after the current step')).toBe(true);
  const after = tty.text.slice(tty.text.indexOf('llmrl: stopping'));
  expect(after).toMatch(/^llmrl: stopping after the current step\n/);
  expect(frames(after.slice(after.indexOf('\n'))).at(-1)).toMatch(/^step 1\/10 \[/);
  p.stop();
  expect(noteAboveProgress('x')).toBe(false); // no active bar

  const narrow = new FakeTty(60);
  const q = createProgress({ total: 10, tty: true, stream: narrow, log: () => {}, now: clock(1000) });
  q.update(5, M);
  q.stop();
  const line = frames(narrow.text).at(-1)!.replace(/\n$/, ''); // stop() ended the line
  expect(line.length).toBeLessThanOrEqual(57);
  expect(line).toMatch(/^step 5\/10 \[█+░+\] 50% reward=0\.41 .*eta 5s$/);
  expect(line).not.toContain('tok/s');
  expect(barLine(3, 10, M, 7, 200)).toBe(`step 3/10 [${'█'.repeat(9)}${'░'.repeat(21)}] 30% reward=0.41 kl=0.0031 loss=0.123 tok/s=850 eta 7s`);
});

test('plain lines: every step through log (nothing drawn), every ⌈total/500⌉-th step for long runs', () => {
  const tty = new FakeTty();
  const lines: string[] = [];
  const p = createProgress({ total: 3, tty: false, stream: tty, log: (l) => lines.push(l), now: clock(2000) });
  expect(p.mode).toBe('plain');
  for (let s = 1; s <= 3; s++) p.update(s, M);
  p.stop();
  expect(tty.chunks).toEqual([]);
  expect(lines).toHaveLength(3);
  expect(lines[0]).toBe('step 1/3  loss=0.1230  reward/mean=0.4100  kl/mean=0.0031  policy/entropy=2.5000  tok/s=850  eta 4s');
  expect(lines[2]).toMatch(/^step 3\/3 .* eta 0s$/);

  const long: string[] = [];
  const q = createProgress({ total: 2000, tty: false, log: (l) => long.push(l), now: clock(10) });
  for (let s = 1; s <= 2000; s++) q.update(s, M);
  expect(long).toHaveLength(501); // the first step, then every 4th
  expect(long[0]).toMatch(/^step 1\/2000 /);
  expect(long[1]).toMatch(/^step 4\/2000 /);
  expect(long.at(-1)).toMatch(/^step 2000\/2000 /);
});

test('label: before the plain lines and the bar (the demo names its stage), never in JSON lines', () => {
  const lines: string[] = [];
  const p = createProgress({ total: 100, tty: false, label: 'GRPO', every: 50, log: (l) => lines.push(l), now: clock(10) });
  for (let s = 1; s <= 100; s++) p.update(s, M);
  expect(lines.map((l) => l.split('  ').slice(0, 2).join(' '))).toEqual(['GRPO step 1/100', 'GRPO step 50/100', 'GRPO step 100/100']);
  const tty = new FakeTty(100);
  const b = createProgress({ total: 4, tty: true, label: 'PPO', stream: tty, log: () => {}, now: clock(10) });
  b.update(2, M);
  b.stop();
  const last = frames(tty.chunks.join('')).at(-1)!;
  expect(last.startsWith('PPO  step 2/4 [')).toBe(true);
  expect(last.length).toBeLessThanOrEqual(100);
  const json: string[] = [];
  const j = createProgress({ total: 1, json: true, label: 'x', log: (l) => json.push(l) });
  j.update(1, M);
  expect(JSON.parse(json[0])).toEqual({ step: 1, ...M });
});

test('json: one parseable JSON line per step with the step and the metrics', () => {
  const lines: string[] = [];
  const p = createProgress({ total: 2, json: true, tty: true, stream: new FakeTty(), log: (l) => lines.push(l) });
  expect(p.mode).toBe('json'); // --json wins over the bar
  p.update(1, M);
  p.update(2, { ...M, loss: 0.1 });
  p.stop();
  expect(lines.map((l) => JSON.parse(l))).toEqual([{ step: 1, ...M }, { step: 2, ...M, loss: 0.1 }]);
});

test('TTY detection and durations', () => {
  expect(isInteractive({ isTTY: true }, {})).toBe(true);
  expect(isInteractive({ isTTY: true }, { CI: 'true' })).toBe(false);
  expect(isInteractive({ isTTY: true }, { CI: '1' })).toBe(false);
  expect(isInteractive({ isTTY: true }, { CI: 'false' })).toBe(true);
  expect(isInteractive({ isTTY: false }, {})).toBe(false);
  expect(isInteractive({}, {})).toBe(false);
  expect([formatDuration(NaN), formatDuration(4.4), formatDuration(72), formatDuration(3600 + 5 * 60 + 9)]).toEqual(['--', '4s', '1m12s', '1h05m']);
});

test('llmrl train on a terminal draws the bar on stdout, then the summary on a fresh line', async () => {
  const written: string[] = [];
  const stdout = process.stdout as NodeJS.WriteStream;
  const wasTty = stdout.isTTY;
  const ci = process.env.CI;
  const logged: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => { logged.push(a.join(' ')); written.push(`${a.join(' ')}\n`); });
  vi.spyOn(stdout, 'write').mockImplementation(((chunk: string | Uint8Array) => { written.push(String(chunk)); return true; }) as typeof stdout.write);
  stdout.isTTY = true;
  delete process.env.CI;
  try {
    await runTrain('grpo', { config: path.resolve('examples/grpo-tiny.json'), set: ['trainer.maxSteps=2', 'trainer.outputDir=null'] });
  } finally {
    stdout.isTTY = wasTty;
    if (ci !== undefined) process.env.CI = ci;
  }
  const out = written.join('');
  expect(logged.some((l) => /^step \d/.test(l))).toBe(false); // no plain step lines
  expect(frames(out).some((f) => /^step 2\/2 \[█+\] 100% reward=.* eta 0s/.test(f))).toBe(true);
  // the bar's line is ended before the summary table
  expect(out).toMatch(/eta 0s\x1b\[0K\n(.*\n)?\nmetric\s+first\s+last\s+mean/);
  expect(out).toContain('finished 2 steps');
}, 120_000);

// Per-step progress for long CLI work (`llmrl train`). Three modes, one interface:
// - TTY (stdout is a terminal, CI unset, no --no-progress): one bar line drawn by cli-progress and redrawn
//   in place, `step 12/600 [█████░░░░░] 2% reward=0.41 kl=0.0031 loss=0.123 tok/s=850 eta 1m12s`, fitted to
//   the terminal width; `note()` prints a line above it (the Ctrl-C message); `stop()` leaves the final bar
//   and ends its line, so what follows starts on a fresh line.
// - plain: the log line `step 12/600  loss=…  reward/mean=…  eta 1m12s` for every step of runs up to 500
//   steps; longer runs print every ⌈total/500⌉-th step (plus the first and the last), so a log file gets
//   at most ~500 lines (metrics.jsonl still has every step).
// - json (--json): one JSON line per step, `{"step":12,...metrics}`.
import { MultiBar, type SingleBar } from 'cli-progress';
import { fmt, formatDuration, short } from './format.js';

export type StepMetrics = Record<string, number>;

/** The stream a bar is drawn on (process.stdout, or a test's fake TTY). */
export type ProgressStream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

export interface ProgressOptions {
  /** The step count the run ends at (trainer.maxSteps). */
  total: number;
  /** One JSON line per step through `log` (wins over the bar). */
  json?: boolean;
  /** Draw a bar on `stream`; default: `isInteractive(stream)`. */
  tty?: boolean;
  /** Where plain and JSON lines go. */
  log: (line: string) => void;
  /** The bar's stream (default process.stdout, the stream `log` writes to in the CLI). */
  stream?: ProgressStream;
  /** Shown before `step …` on the bar and the plain lines (e.g. the demo's method name). */
  label?: string;
  /** Plain mode: print every n-th step (default 1 up to 500 steps, else ⌈total/500⌉). */
  every?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

export interface Progress {
  readonly mode: 'tty' | 'plain' | 'json';
  update(step: number, metrics: StepMetrics): void;
  /** Prints a line without breaking the bar (above it on a TTY; through `log` otherwise). */
  note(line: string): void;
  /** Stops redrawing; the bar's line is ended, so later output starts on a fresh line. Idempotent. */
  stop(): void;
}

/** True when `stream` is a terminal and the environment is not CI (`CI` unset, empty, 0 or false). */
export function isInteractive(stream: { isTTY?: boolean } = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  const ci = env.CI;
  return stream.isTTY === true && (ci === undefined || ci === '' || ci === '0' || ci.toLowerCase() === 'false');
}

/** Metrics on a plain line, in order. */
export const LINE_KEYS = ['loss', 'reward/mean', 'kl/mean', 'policy/clipFrac', 'policy/entropy', 'rewards/accuracies', 'accuracy', 'perf/tokensPerSec'];
/** Metrics on the bar: short name, keys tried in order. Dropped from the end when the terminal is narrow. */
const BAR_KEYS: [string, string[]][] = [['reward', ['reward/mean']], ['kl', ['kl/mean']], ['loss', ['loss']], ['acc', ['rewards/accuracies', 'accuracy']], ['tok/s', ['perf/tokensPerSec']]];

/** The plain log line of a step. */
export function progressLine(step: number, total: number, m: StepMetrics, etaSeconds: number): string {
  const parts = LINE_KEYS.filter((k) => k in m).map((k) => (k === 'perf/tokensPerSec' ? `tok/s=${m[k].toFixed(0)}` : `${k}=${fmt(m[k])}`));
  return `step ${step}/${total}  ${parts.join('  ')}  ${Number.isFinite(etaSeconds) ? `eta ${formatDuration(etaSeconds)}` : ''}`.trimEnd();
}

/** The bar line of a step, fitted into `width` columns (the bar shrinks first, then metrics drop). */
export function barLine(step: number, total: number, m: StepMetrics, etaSeconds: number, width: number): string {
  const frac = total > 0 ? Math.min(1, Math.max(0, step / total)) : 1;
  const head = `step ${step}/${total}`;
  const pct = `${Math.floor(frac * 100)}%`;
  const eta = `eta ${formatDuration(etaSeconds)}`;
  const metrics: string[] = [];
  for (const [name, keys] of BAR_KEYS) {
    const k = keys.find((x) => Number.isFinite(m[x]));
    if (k) metrics.push(`${name}=${name === 'tok/s' ? m[k].toFixed(0) : short(m[k])}`);
  }
  const room = width - 3; // the last column stays free (no wrap), and the terminal's echo of ^C fits too
  for (;;) {
    const rest = [head, pct, ...metrics, eta].join(' ').length + 3; // + ' [' and '] '
    const size = Math.min(30, room - rest);
    if (size >= 10 || metrics.length === 0) {
      const n = Math.max(size, 0);
      const done = Math.round(frac * n);
      const bar = n > 0 ? ` [${'█'.repeat(done)}${'░'.repeat(n - done)}] ` : ' ';
      return `${head}${bar}${[pct, ...metrics, eta].join(' ')}`.slice(0, Math.max(room, 0));
    }
    metrics.pop();
  }
}

/** The reporter with an active bar, for `noteAboveProgress` (one bar at a time: the CLI runs one job). */
let active: Progress | null = null;

/** Prints `line` above the active bar and returns true; false when no bar is drawn (print it yourself). */
export function noteAboveProgress(line: string): boolean {
  if (!active) return false;
  active.note(line);
  return true;
}

/** A progress reporter: a bar on a TTY, plain lines otherwise, JSON lines with `json`. */
export function createProgress(opts: ProgressOptions): Progress {
  const { total, log } = opts;
  const prefix = opts.label ? `${opts.label}  ` : '';
  const stream = opts.stream ?? process.stdout;
  const now = opts.now ?? (() => performance.now());
  const mode: Progress['mode'] = opts.json ? 'json' : (opts.tty ?? isInteractive(stream)) ? 'tty' : 'plain';
  const every = Math.max(1, Math.floor(opts.every ?? (total <= 500 ? 1 : Math.ceil(total / 500))));
  const t0 = now();
  // (step, time) of recent steps: the ETA follows the last 20 steps' pace (runs speed up and slow down).
  const recent: [number, number][] = [];
  const etaAt = (step: number): number => {
    if (recent.length < 2) return NaN;
    const [s0, ta] = recent[0];
    const [s1, tb] = recent[recent.length - 1];
    return s1 > s0 ? (((tb - ta) / 1000) * (total - step)) / (s1 - s0) : NaN;
  };
  let state = { step: 0, metrics: {} as StepMetrics, eta: NaN };
  let multi: MultiBar | null = null;
  let bar: SingleBar | null = null;
  let stopped = false;
  let lastDraw = -Infinity;

  const progress: Progress = {
    mode,
    update(step, metrics) {
      if (stopped) return;
      const t = now();
      const first = recent.length === 0;
      if (first) recent.push([step - 1, t0]);
      recent.push([step, t]);
      if (recent.length > 21) recent.shift();
      state = { step, metrics, eta: etaAt(step) };
      if (mode === 'json') log(JSON.stringify({ step, ...metrics }));
      else if (mode === 'plain') {
        if (first || step % every === 0 || step >= total) log(prefix + progressLine(step, total, metrics, state.eta));
      } else if (bar && multi) {
        bar.update(step);
        // Draw now (steps block the event loop, so the 10 fps timer only runs between them); at most 20/s.
        if (t - lastDraw >= 50 || step >= total) { lastDraw = t; multi.update(); }
      }
    },
    note(line) {
      if (multi && !stopped) {
        multi.log(`${line}\n`);
        multi.update(); // now: stop() may come before the next timer tick, and it drops buffered lines
      } else log(line);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      multi?.stop();
      if (active === progress) active = null;
    },
  };

  if (mode === 'tty') {
    multi = new MultiBar({
      stream,
      // Our own line (metrics, ETA over recent steps, fitted to the width); cli-progress draws it in place
      // at each step (update() above) and 10 times a second while the event loop is free.
      format: (_o, params) => prefix + barLine(state.step, total, state.metrics, state.eta, params.maxWidth - prefix.length),
      fps: 10,
      forceRedraw: true, // redraw even when unchanged: after note() and any stray write to the terminal
      linewrap: true, // keep the terminal's wrap mode (false would switch auto-wrap off until stop())
      hideCursor: false, // a second Ctrl-C exits at once: leave the cursor as it is
      gracefulExit: false, // Ctrl-C is the trainer's (stop after the step, checkpoint)
      clearOnComplete: false,
    });
    bar = multi.create(total, 0);
    multi.update();
    active = progress;
  }
  return progress;
}

// Optimisers: libtorch's torch::optim::AdamW and SGD behind native handles (native/binding/optim.cpp),
// with PyTorch's defaults, per-group learning rates for schedulers, and checkpointable state.
//   AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization"), per step t:
//     p ← p·(1 − lr·λ);  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²
//     p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)        (amsgrad: v replaced by its running max)
//   SGD with momentum μ, dampening τ, weight decay λ (PyTorch's formulation):
//     d ← g + λp;  b ← d (first step) or μb + (1−τ)d;  d ← nesterov ? d + μb : b;  p ← p − lr·d
// The native optimiser holds the parameters' native tensors: create it after `module.to(...)`, and
// dispose() it when done (its state is as large as two copies of the parameters for AdamW).
import { native, type OptimHandle, type Handle } from '../native/addon.js';
import { Tensor, isFloating } from '../tensor/index.js';

/** A set of parameters with its own learning rate / weight decay (e.g. no decay for norms and biases). */
export interface ParamGroup {
  params: Tensor[];
  /** Overrides the optimiser's `lr` for this group. */
  lr?: number;
  /** Overrides the optimiser's `weightDecay` for this group. */
  weightDecay?: number;
}

/** Either a flat list of parameters (one group) or a list of groups. */
export type Params = Tensor[] | ParamGroup[];

/** Per-parameter state, in group order: AdamW `{ step, expAvg, expAvgSq, maxExpAvgSq? }`, SGD
 *  `{ momentumBuffer }`, or null for a parameter that has no state yet. */
export type ParamState = Record<string, Tensor | number> | null;

export interface OptimizerStateDict {
  state: ParamState[];
  /** Current learning rate of each group. */
  lrs: number[];
}

export interface AdamWOptions {
  /** Learning rate, default 1e-3. */
  lr?: number;
  /** Decay rates of the first and second moment averages, default [0.9, 0.999]. */
  betas?: [number, number];
  /** Added to the denominator for numerical stability, default 1e-8. */
  eps?: number;
  /** Decoupled weight decay λ (p ← p·(1 − lr·λ)), default 0.01 (PyTorch's AdamW default). */
  weightDecay?: number;
  /** Use the running maximum of v (Reddi et al. 2018), default false. */
  amsgrad?: boolean;
}

export interface SGDOptions {
  /** Learning rate (required, as in PyTorch). */
  lr: number;
  /** Momentum factor μ, default 0. */
  momentum?: number;
  /** Dampening τ of the momentum, default 0. */
  dampening?: number;
  /** L2 penalty λ added to the gradient, default 0. */
  weightDecay?: number;
  /** Nesterov momentum (needs momentum > 0 and dampening 0), default false. */
  nesterov?: boolean;
}

function num(owner: string, name: string, v: unknown, lo: number, hi: number, hiOpen = false): number {
  const ok = typeof v === 'number' && Number.isFinite(v) && v >= lo && (hiOpen ? v < hi : v <= hi);
  if (!ok) {
    const range = `${hiOpen ? `[${lo}, ${hi})` : hi === Infinity ? `>= ${lo}` : `[${lo}, ${hi}]`}`;
    throw new RangeError(`${owner}: '${name}' must be a finite number ${range.startsWith('>') ? range : `in ${range}`}, got ${typeof v === 'number' ? v : JSON.stringify(v) ?? String(v)}`);
  }
  return v as number;
}

function checkKeys(owner: string, opts: object, allowed: readonly string[]): void {
  for (const k of Object.keys(opts)) {
    if (allowed.includes(k)) continue;
    const camel = k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    const hint = allowed.includes(camel) ? `; did you mean '${camel}'?` : `; known options: ${allowed.join(', ')}`;
    throw new TypeError(`${owner}: unknown option '${k}'${hint}`);
  }
}

interface ResolvedGroup {
  params: Tensor[];
  lr: number;
  weightDecay: number;
}

function resolveGroups(owner: string, params: Params, lr: number, weightDecay: number): ResolvedGroup[] {
  if (!Array.isArray(params) || params.length === 0) {
    throw new TypeError(`${owner}: 'params' must be a non-empty array of Tensors (e.g. model.parameters()) or of { params, lr?, weightDecay? } groups, got ${Array.isArray(params) ? 'an empty array' : typeof params}`);
  }
  const flat = params[0] instanceof Tensor;
  const raw: ParamGroup[] = flat ? [{ params: params as Tensor[] }] : (params as ParamGroup[]);
  const seen = new Set<Tensor>();
  return raw.map((g, gi) => {
    if (g instanceof Tensor || g === null || typeof g !== 'object' || !Array.isArray(g.params)) {
      throw new TypeError(`${owner}: params[${gi}] must be a { params: Tensor[], lr?, weightDecay? } group (do not mix Tensors and groups)`);
    }
    checkKeys(`${owner}: params[${gi}]`, g, ['params', 'lr', 'weightDecay']);
    if (g.params.length === 0) throw new TypeError(`${owner}: group ${gi} has an empty 'params' list`);
    g.params.forEach((p, i) => {
      const where = flat ? `params[${i}]` : `group ${gi} params[${i}]`;
      if (!(p instanceof Tensor)) throw new TypeError(`${owner}: ${where} must be a Tensor, got ${p === null ? 'null' : typeof p}`);
      if (p.isDisposed) throw new Error(`${owner}: ${where} is a disposed tensor`);
      if (!isFloating(p.dtype)) throw new TypeError(`${owner}: ${where} has dtype ${p.dtype}; only floating-point tensors can be optimised`);
      if (!p.isLeaf) throw new Error(`${owner}: ${where} is not a leaf tensor (it was computed from others); pass the module's parameters, or t.detach().requiresGrad_()`);
      if (seen.has(p)) throw new Error(`${owner}: ${where} appears more than once; each parameter may be in one group only (tied weights are listed once by module.parameters())`);
      seen.add(p);
    });
    return {
      params: g.params,
      lr: g.lr === undefined ? lr : num(`${owner}: group ${gi}`, 'lr', g.lr, 0, Infinity),
      weightDecay: g.weightDecay === undefined ? weightDecay : num(`${owner}: group ${gi}`, 'weightDecay', g.weightDecay, 0, Infinity),
    };
  });
}

const STATE_KEYS = { AdamW: ['expAvg', 'expAvgSq'], SGD: ['momentumBuffer'] } as const;

/** Common interface of AdamW and SGD (what schedulers and trainers depend on). */
export abstract class Optimizer {
  /** The learning rate each group started with (schedulers scale these). */
  readonly baseLrs: readonly number[];
  /** The parameters of each group, in order (the order of `stateDict().state`). */
  readonly paramGroups: readonly (readonly Tensor[])[];
  private h: OptimHandle | null;

  protected constructor(private readonly kind: 'AdamW' | 'SGD', h: OptimHandle, groups: ResolvedGroup[]) {
    this.h = h;
    this.baseLrs = Object.freeze(groups.map((g) => g.lr));
    this.paramGroups = Object.freeze(groups.map((g) => Object.freeze([...g.params])));
  }

  private handle(what: string): OptimHandle {
    if (!this.h) throw new Error(`${this.kind}.${what}: the optimizer was disposed; create a new one`);
    return this.h;
  }

  /** All parameters, flattened in group order. */
  get params(): Tensor[] {
    return this.paramGroups.flat();
  }

  /** Applies one update from the current gradients (parameters without a gradient are skipped). */
  step(): void {
    native().optimStep(this.handle('step'));
  }

  /** Clears gradients: sets them to null (default, frees memory) or fills them with zeros. */
  zeroGrad(setToNone = true): void {
    native().optimZeroGrad(this.handle('zeroGrad'), setToNone);
  }

  /** The learning rate of the first group (use `groupLrs` when groups differ). */
  get lr(): number {
    return native().optimGetLr(this.handle('lr'))[0];
  }

  /** Sets the learning rate of every group. */
  set lr(v: number) {
    native().optimSetLr(this.handle('lr'), num(`${this.kind}.lr`, 'lr', v, 0, Infinity));
  }

  /** Current learning rate of each group. */
  get groupLrs(): number[] {
    return native().optimGetLr(this.handle('groupLrs'));
  }

  /** Sets each group's learning rate (one value per group). */
  setGroupLrs(lrs: readonly number[]): void {
    const h = this.handle('setGroupLrs');
    if (!Array.isArray(lrs) || lrs.length !== this.paramGroups.length) {
      throw new RangeError(`${this.kind}.setGroupLrs: expected ${this.paramGroups.length} learning rates (one per group), got ${Array.isArray(lrs) ? lrs.length : typeof lrs}`);
    }
    lrs.forEach((v, i) => num(`${this.kind}.setGroupLrs`, `lrs[${i}]`, v, 0, Infinity));
    native().optimSetLr(h, [...lrs]);
  }

  /**
   * The optimiser's state for a checkpoint: per parameter (in `params` order) its moment tensors
   * (copies that the caller owns and must dispose, e.g. with tidy) and step count, plus each group's lr.
   */
  stateDict(): OptimizerStateDict {
    const raw = native().optimGetState(this.handle('stateDict'));
    const state = raw.map((s): ParamState => {
      if (!s) return null;
      const o: Record<string, Tensor | number> = {};
      for (const [k, v] of Object.entries(s)) o[k] = typeof v === 'number' ? v : Tensor._wrap(v);
      return o;
    });
    return { state, lrs: this.groupLrs };
  }

  /**
   * Restores state saved by `stateDict()` (values are copied in, converted to each parameter's dtype
   * and device; the caller keeps ownership of `sd`'s tensors). Also restores the group lrs if present.
   */
  loadStateDict(sd: OptimizerStateDict): void {
    const h = this.handle('loadStateDict');
    const owner = `${this.kind}.loadStateDict`;
    if (!sd || typeof sd !== 'object' || !Array.isArray(sd.state)) {
      throw new TypeError(`${owner}: expected { state: (object | null)[], lrs: number[] } from stateDict(), got ${sd === null ? 'null' : typeof sd}`);
    }
    const params = this.params;
    if (sd.state.length !== params.length) {
      throw new RangeError(`${owner}: the state has ${sd.state.length} entries but this optimizer has ${params.length} parameters; build the optimizer over the same parameters, in the same order, as the one that was saved`);
    }
    const need = STATE_KEYS[this.kind];
    const raw = sd.state.map((s, i) => {
      if (s === null || s === undefined) return null;
      const out: Record<string, Handle | number> = {};
      for (const k of need) {
        if (!(s[k] instanceof Tensor)) {
          throw new TypeError(`${owner}: state[${i}].${k} must be a Tensor (${this.kind} state holds ${need.join(', ')}), got ${s[k] === undefined ? 'nothing' : typeof s[k]}; was this state saved by a different optimizer type?`);
        }
      }
      for (const [k, v] of Object.entries(s)) {
        if (typeof v === 'number') { out[k] = v; continue; }
        if (!(v instanceof Tensor)) throw new TypeError(`${owner}: state[${i}].${k} must be a Tensor or a number, got ${typeof v}`);
        const ps = params[i].shape;
        const vs = v.shape;
        if (ps.length !== vs.length || ps.some((d, j) => d !== vs[j])) {
          throw new RangeError(`${owner}: state[${i}].${k} has shape [${vs.join(', ')}] but parameter ${i} has shape [${ps.join(', ')}]`);
        }
        out[k] = v._h;
      }
      return out;
    });
    native().optimSetState(h, raw);
    if (sd.lrs !== undefined) this.setGroupLrs(sd.lrs);
  }

  /** Frees the native optimiser and its state (the parameters belong to their module). */
  dispose(): void {
    if (this.h) native().optimDispose(this.h);
    this.h = null;
  }

  get isDisposed(): boolean {
    return this.h === null;
  }
}

/**
 * AdamW with decoupled weight decay; defaults are PyTorch's (`lr` 1e-3, `betas` [0.9, 0.999],
 * `eps` 1e-8, `weightDecay` 0.01).
 * @example
 * const opt = new AdamW(model.parameters(), { lr: 3e-4, weightDecay: 0.1 });
 * tidy(() => { opt.zeroGrad(); loss(model).backward(); opt.step(); });
 */
export class AdamW extends Optimizer {
  readonly options: Readonly<Required<AdamWOptions>>;

  constructor(params: Params, opts: AdamWOptions = {}) {
    checkKeys('AdamW', opts, ['lr', 'betas', 'eps', 'weightDecay', 'amsgrad']);
    const lr = num('AdamW', 'lr', opts.lr ?? 1e-3, 0, Infinity);
    const betas = opts.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2) throw new TypeError(`AdamW: 'betas' must be a pair [beta1, beta2], got ${JSON.stringify(betas)}`);
    num('AdamW', 'betas[0]', betas[0], 0, 1, true);
    num('AdamW', 'betas[1]', betas[1], 0, 1, true);
    const eps = num('AdamW', 'eps', opts.eps ?? 1e-8, 0, Infinity);
    const weightDecay = num('AdamW', 'weightDecay', opts.weightDecay ?? 0.01, 0, Infinity);
    const amsgrad = opts.amsgrad ?? false;
    if (typeof amsgrad !== 'boolean') throw new TypeError(`AdamW: 'amsgrad' must be a boolean, got ${typeof amsgrad}`);
    const groups = resolveGroups('AdamW', params, lr, weightDecay);
    const h = native().createAdamW(
      groups.map((g) => ({ params: g.params.map((p) => p._h), lr: g.lr, weightDecay: g.weightDecay })),
      { lr, beta1: betas[0], beta2: betas[1], eps, weightDecay, amsgrad },
    );
    super('AdamW', h, groups);
    this.options = Object.freeze({ lr, betas: [betas[0], betas[1]] as [number, number], eps, weightDecay, amsgrad });
  }
}

/**
 * Stochastic gradient descent with optional (Nesterov) momentum; `lr` is required, the rest default
 * to 0 / false like PyTorch.
 */
export class SGD extends Optimizer {
  readonly options: Readonly<Required<SGDOptions>>;

  constructor(params: Params, opts: SGDOptions) {
    if (!opts || typeof opts !== 'object' || opts.lr === undefined) {
      throw new TypeError(`SGD: the 'lr' option is required (there is no good default), e.g. new SGD(params, { lr: 0.01 })`);
    }
    checkKeys('SGD', opts, ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov']);
    const lr = num('SGD', 'lr', opts.lr, 0, Infinity);
    const momentum = num('SGD', 'momentum', opts.momentum ?? 0, 0, Infinity);
    const dampening = num('SGD', 'dampening', opts.dampening ?? 0, 0, 1);
    const weightDecay = num('SGD', 'weightDecay', opts.weightDecay ?? 0, 0, Infinity);
    const nesterov = opts.nesterov ?? false;
    if (typeof nesterov !== 'boolean') throw new TypeError(`SGD: 'nesterov' must be a boolean, got ${typeof nesterov}`);
    if (nesterov && (momentum <= 0 || dampening !== 0)) {
      throw new RangeError(`SGD: Nesterov momentum needs momentum > 0 and dampening 0, got momentum ${momentum}, dampening ${dampening}`);
    }
    const groups = resolveGroups('SGD', params, lr, weightDecay);
    const h = native().createSGD(
      groups.map((g) => ({ params: g.params.map((p) => p._h), lr: g.lr, weightDecay: g.weightDecay })),
      { lr, momentum, dampening, weightDecay, nesterov },
    );
    super('SGD', h, groups);
    this.options = Object.freeze({ lr, momentum, dampening, weightDecay, nesterov });
  }
}

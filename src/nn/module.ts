// Module: the base class of every layer and model (PyTorch's torch.nn.Module, minus the magic).
// A module owns named parameters (trainable leaves), buffers (non-trained state such as running
// statistics or rotary tables) and child modules; names compose with dots like PyTorch's
// (`layers.0.attn.qProj.weight`) so state dicts line up with Hugging Face checkpoints.
// Lifetime (DESIGN.md "Memory and lifetime"): registered tensors are exempt from tidy scopes (keep())
// and live until `module.dispose()`. Forward is an ordinary method, `forward(...)`; there is no
// implicit `__call__`, so hooks and call overhead do not exist.
import { Tensor, keep, noGrad, isFloating, type DType, type Device } from '../tensor/index.js';

/** Target of `module.to()`: a dtype, a device, or both. */
export type ModuleTo = DType | Device | { dtype?: DType; device?: Device };

export interface LoadStateDictOptions {
  /** Require the keys to match exactly (default true): missing or unexpected keys throw. */
  strict?: boolean;
}

export interface LoadStateDictResult {
  /** Module keys absent from the state dict (left unchanged). */
  missingKeys: string[];
  /** State-dict keys the module does not have (ignored). */
  unexpectedKeys: string[];
}

export interface RegisterBufferOptions {
  /** Whether the buffer is part of `stateDict()` (default true). Derived tables (rotary caches,
   *  causal masks) are registered with `persistent: false`, as in PyTorch. */
  persistent?: boolean;
}

const DEVICE_RE = /^(cpu|cuda(:\d+)?)$/;

function checkName(owner: string, what: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || name === '' || name.includes('.')) {
    throw new TypeError(`${owner}.${what}: 'name' must be a non-empty string without dots, got ${JSON.stringify(name)}; dots separate nesting levels in state-dict keys`);
  }
}

function fmtShape(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

/**
 * Base class of layers and models. Subclasses register their tensors and children in the
 * constructor and define `forward`:
 * @example
 * class MLP extends Module {
 *   readonly fc1 = this.registerModule('fc1', new Linear(4, 16));
 *   readonly fc2 = this.registerModule('fc2', new Linear(16, 1));
 *   forward(x: Tensor): Tensor { return this.fc2.forward(this.fc1.forward(x).relu()); }
 * }
 */
export abstract class Module {
  /** True in training mode (dropout active); set recursively by `train()` / `eval()`. */
  training = true;
  private readonly _params = new Map<string, Tensor | null>();
  private readonly _buffers = new Map<string, Tensor | null>();
  private readonly _nonPersistent = new Set<string>();
  private readonly _modules = new Map<string, Module>();

  /** The computation. Subclasses choose their own signature (e.g. `forward(x: Tensor): Tensor`). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  abstract forward(...args: any[]): any;

  // ---- registration ----

  /**
   * Registers a trainable tensor (or null for an absent optional one, like a disabled bias).
   * The tensor is kept out of tidy scopes and gets `requiresGrad = true` (floating dtypes only).
   * Registering an existing name replaces the entry (weight tying); the old tensor is not disposed.
   */
  registerParameter(name: string, t: Tensor | null): Tensor {
    checkName(this.constructor.name, 'registerParameter', name);
    if (t !== null && !(t instanceof Tensor)) {
      throw new TypeError(`${this.constructor.name}.registerParameter('${name}'): expected a Tensor or null, got ${typeof t}`);
    }
    if (this._buffers.has(name) || this._modules.has(name)) {
      throw new Error(`${this.constructor.name}.registerParameter: '${name}' is already a ${this._buffers.has(name) ? 'buffer' : 'submodule'}; pick another name`);
    }
    if (t) {
      if (!t.isLeaf) {
        throw new Error(`${this.constructor.name}.registerParameter('${name}'): the tensor is not a leaf (it was computed from others, so optimizers cannot update it); create it under noGrad() or pass t.detach()`);
      }
      keep(t);
      if (!t.requiresGrad && isFloating(t.dtype)) t.requiresGrad = true;
    }
    this._params.set(name, t);
    return t as Tensor;
  }

  /** Registers a non-trainable tensor (kept out of tidy scopes; requiresGrad untouched). */
  registerBuffer(name: string, t: Tensor | null, opts: RegisterBufferOptions = {}): Tensor {
    checkName(this.constructor.name, 'registerBuffer', name);
    if (t !== null && !(t instanceof Tensor)) {
      throw new TypeError(`${this.constructor.name}.registerBuffer('${name}'): expected a Tensor or null, got ${typeof t}`);
    }
    if (this._params.has(name) || this._modules.has(name)) {
      throw new Error(`${this.constructor.name}.registerBuffer: '${name}' is already a ${this._params.has(name) ? 'parameter' : 'submodule'}; pick another name`);
    }
    if (t) keep(t);
    this._buffers.set(name, t);
    if (opts.persistent === false) this._nonPersistent.add(name);
    else this._nonPersistent.delete(name);
    return t as Tensor;
  }

  /** Registers a child module; its parameters appear under `name.`. Returns the child. */
  registerModule<M extends Module>(name: string, m: M): M {
    checkName(this.constructor.name, 'registerModule', name);
    if (!(m instanceof Module)) {
      throw new TypeError(`${this.constructor.name}.registerModule('${name}'): expected a Module, got ${m === null ? 'null' : typeof m}`);
    }
    if (this._params.has(name) || this._buffers.has(name)) {
      throw new Error(`${this.constructor.name}.registerModule: '${name}' is already a ${this._params.has(name) ? 'parameter' : 'buffer'}; pick another name`);
    }
    this._modules.set(name, m);
    return m;
  }

  /** The parameter registered under `name` on this module (not recursive), or null. */
  protected param(name: string): Tensor | null {
    return this._params.get(name) ?? null;
  }

  /** The buffer registered under `name` on this module (not recursive), or null. */
  protected buffer(name: string): Tensor | null {
    return this._buffers.get(name) ?? null;
  }

  // ---- traversal ----

  /** `[name, module]` for this module (name '') and every descendant, depth first, each once. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const walk = (m: Module, p: string): void => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([p, m]);
      for (const [n, c] of m._modules) walk(c, p ? `${p}.${n}` : n);
    };
    walk(this, prefix);
    return out;
  }

  /** Every module in the tree, this one first. */
  modules(): Module[] {
    return this.namedModules().map(([, m]) => m);
  }

  /** Direct children with their names. */
  namedChildren(): [string, Module][] {
    return [...this._modules];
  }

  /** Direct children. */
  children(): Module[] {
    return [...this._modules.values()];
  }

  /**
   * `[dottedName, tensor]` for every parameter in the tree (`layers.0.weight`). A tensor shared by
   * several modules (tied weights) is listed once, under its first name, as in PyTorch.
   */
  namedParameters(): [string, Tensor][] {
    return this.collect('params', true);
  }

  /** Every parameter once (the list to hand to an optimizer). */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** `[dottedName, tensor]` for every buffer in the tree, each tensor once. */
  namedBuffers(): [string, Tensor][] {
    return this.collect('buffers', true);
  }

  buffers(): Tensor[] {
    return this.namedBuffers().map(([, t]) => t);
  }

  private collect(kind: 'params' | 'buffers', dedupe: boolean, persistentOnly = false): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    for (const [prefix, m] of this.namedModules()) {
      const map = kind === 'params' ? m._params : m._buffers;
      for (const [n, t] of map) {
        if (!t || (dedupe && seen.has(t))) continue;
        if (persistentOnly && m._nonPersistent.has(n)) continue;
        seen.add(t);
        out.push([prefix ? `${prefix}.${n}` : n, t]);
      }
    }
    return out;
  }

  // ---- state dict ----

  /**
   * Parameters and persistent buffers by dotted name. The values are the module's own tensors
   * (references, not copies): do not dispose them; `clone()` what must outlive the module.
   * Tied weights appear under every name, like PyTorch's `state_dict()`.
   */
  stateDict(): Record<string, Tensor> {
    const sd: Record<string, Tensor> = {};
    for (const [k, t] of this.collect('params', false)) sd[k] = t;
    for (const [k, t] of this.collect('buffers', false, true)) sd[k] = t;
    return sd;
  }

  /**
   * Copies values from `sd` into this module's parameters and buffers (in place, so references and
   * optimizers stay valid), converting dtype and device to each target's. Everything is checked
   * before anything is written. Strict mode (default) rejects missing and unexpected keys.
   */
  loadStateDict(sd: Record<string, Tensor>, opts: LoadStateDictOptions = {}): LoadStateDictResult {
    const strict = opts.strict ?? true;
    if (sd === null || typeof sd !== 'object') {
      throw new TypeError(`loadStateDict: 'sd' must be an object mapping names to Tensors, got ${sd === null ? 'null' : typeof sd}`);
    }
    const own = this.stateDict();
    const missingKeys = Object.keys(own).filter((k) => !(k in sd));
    const unexpectedKeys = Object.keys(sd).filter((k) => !(k in own));
    if (strict && (missingKeys.length || unexpectedKeys.length)) {
      const parts: string[] = [];
      if (missingKeys.length) parts.push(`missing keys: ${missingKeys.map((k) => `'${k}'`).join(', ')}`);
      if (unexpectedKeys.length) parts.push(`unexpected keys: ${unexpectedKeys.map((k) => `'${k}'`).join(', ')}`);
      throw new Error(`loadStateDict (${this.constructor.name}): ${parts.join('; ')}. Fix the key names, or pass { strict: false } to load the matching keys only`);
    }
    const pairs: [Tensor, Tensor][] = [];
    for (const [k, dst] of Object.entries(own)) {
      if (!(k in sd)) continue;
      const src = sd[k];
      if (!(src instanceof Tensor)) throw new TypeError(`loadStateDict: '${k}' must be a Tensor, got ${src === null ? 'null' : typeof src}`);
      if (src.isDisposed) throw new Error(`loadStateDict: '${k}' is a disposed tensor`);
      const a = dst.shape;
      const b = src.shape;
      if (a.length !== b.length || a.some((d, i) => d !== b[i])) {
        throw new RangeError(`loadStateDict: size mismatch for '${k}': expected shape ${fmtShape(a)} (the module's), got ${fmtShape(b)} from the state dict; check that the model config matches the checkpoint`);
      }
      pairs.push([dst, src]);
    }
    // copy_ converts dtype and device; noGrad because the destinations are leaves that need grad.
    noGrad(() => {
      for (const [dst, src] of pairs) dst.copy_(src);
    });
    return { missingKeys, unexpectedKeys };
  }

  // ---- conversion and modes ----

  /**
   * Converts every parameter and buffer in place (`Tensor._replace`, so existing references see the
   * new dtype/device). A dtype applies to floating tensors only (integer buffers keep theirs), as in
   * PyTorch. requiresGrad is preserved; existing gradients are converted too.
   * Create optimizers after moving a model: they hold the native tensors they were given.
   */
  to(target: ModuleTo): this {
    let dtype: DType | undefined;
    let device: Device | undefined;
    if (typeof target === 'string') {
      if (DEVICE_RE.test(target)) device = target as Device;
      else dtype = target as DType;
    } else if (target && typeof target === 'object') {
      ({ dtype, device } = target);
    } else {
      throw new TypeError(`${this.constructor.name}.to: expected a dtype ('float32', 'bfloat16', …), a device ('cpu', 'cuda', 'cuda:N') or { dtype, device }, got ${String(target)}`);
    }
    const tensors = new Set<Tensor>();
    for (const m of this.modules()) {
      for (const t of m._params.values()) if (t) tensors.add(t);
      for (const t of m._buffers.values()) if (t) tensors.add(t);
    }
    noGrad(() => {
      for (const t of tensors) {
        const dt = dtype && isFloating(t.dtype) ? dtype : undefined;
        if ((dt === undefined || dt === t.dtype) && (device === undefined || device === t.device)) continue;
        const needsGrad = t.requiresGrad;
        const g = t.grad;
        const c = t.to({ dtype: dt, device });
        t._replace(c); // t now holds the converted tensor; c (the old one) is disposed
        if (needsGrad) t.requiresGrad = true;
        if (g) {
          const gc = g.to({ dtype: dt, device });
          t.grad = gc;
          gc.dispose();
          g.dispose();
        }
      }
    });
    return this;
  }

  /** Sets training mode on this module and every descendant (dropout on). Returns this. */
  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }

  /** Evaluation mode: `train(false)`. */
  eval(): this {
    return this.train(false);
  }

  /** Sets requiresGrad on every parameter (false freezes the module, e.g. a reference model). */
  requiresGrad_(v = true): this {
    for (const p of this.parameters()) p.requiresGrad = v;
    return this;
  }

  /** Drops every parameter's gradient (sets it to null, freeing its memory). */
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  /** Number of scalar parameters (each tied tensor counted once). */
  numParameters(opts: { trainableOnly?: boolean } = {}): number {
    let n = 0;
    for (const p of this.parameters()) if (!opts.trainableOnly || p.requiresGrad) n += p.numel;
    return n;
  }

  /** Frees every parameter and buffer in the tree now. The module is unusable afterwards. */
  dispose(): void {
    for (const m of this.modules()) {
      for (const t of m._params.values()) t?.dispose();
      for (const t of m._buffers.values()) t?.dispose();
    }
  }

  /** One line per module with its parameter shapes, for logging. */
  toString(): string {
    const lines: string[] = [];
    for (const [name, m] of this.namedModules()) {
      const ps = [...m._params].filter(([, t]) => t).map(([n, t]) => `${n}${fmtShape(t!.shape)}`);
      lines.push(`${name || '(root)'}: ${m.constructor.name}${ps.length ? ` {${ps.join(', ')}}` : ''}`);
    }
    return lines.join('\n');
  }
}

#!/usr/bin/env python3
"""GPU check of the llmrl fused ops, with PyTorch and no Node (DESIGN.md "Repository layout": the op
library is a set of ordinary libtorch custom ops, so it loads into Python as torch.ops.llmrl.*).

One command on a machine with a GPU and a CUDA build of PyTorch (`bash scripts/gpu-check.sh`):
  1. builds native/ops (registry.cpp and every op's cpu.cpp, autograd.cpp, cuda.cu) against this
     Python's torch with torch.utils.cpp_extension.load (or, without ninja, a direct c++/nvcc build)
     and loads it;
  2. checks every built op is registered with CPU (and CUDA) kernels;
  3. runs the op checks of OP_CHECKS (one entry per op): the fused op on every device against an unfused
     PyTorch composition in float64 (values and gradients through autograd), and CPU against CUDA;
  4. times the fused CUDA op against the unfused composition (median of N synchronized runs) at training
     sizes: token_logprobs [8192, 32000 / 151936], linear_token_logprobs N=8192 H=4096 V=151936 bf16,
     per-token losses [64, 4096] and [256, 8192], pair losses B=64 and 65536 (the CPU uses smaller shapes).
Exit status 0 when everything matches, 1 on any mismatch, 2 when the library cannot be built.

On a CPU-only torch the CUDA parts are skipped with a message (CPU against the references still runs),
so the script can be smoke-tested anywhere; --build-cuda still compiles, links and loads the CUDA kernels
with a CUDA torch and no GPU. Flags: --ops a,b (build and check only these op folders), --no-bench,
--runs N, --build-dir DIR, --no-ninja (force the direct build), --bench-cpu, --verbose.
Env: TORCH_CUDA_ARCH_LIST (default: the visible GPUs, else "8.0;9.0"), MAX_JOBS, CUDA_HOME, CXX.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
import traceback
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS_DIR = os.path.join(ROOT, "native", "ops")


def site_dirs() -> list[str]:
    return sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})


def find_cuda_home() -> str | None:
    """The CUDA toolkit root, for when CUDA_HOME is unset. cpp_extension takes the parent of `which nvcc`'s
    folder, wrong when that nvcc is a wrapper (/usr/local/bin/nvcc → /usr/local): nvcc says where it is.
    Else an nvcc installed from pip (nvidia-cuda-nvcc: site-packages/nvidia/*/bin/nvcc)."""
    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if nvcc:
        home = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return home
        try:
            out = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                                 capture_output=True, text=True, timeout=60).stderr
            here = next(l.split("=", 1)[1].strip() for l in out.splitlines() if l.startswith("#$ _HERE_="))
            return os.path.dirname(os.path.realpath(here))
        except Exception:  # noqa: BLE001 — fall back to cpp_extension's own guess
            return None
    for base in site_dirs():
        for found in sorted(glob.glob(os.path.join(base, "nvidia", "*", "bin", "nvcc"))):
            return os.path.dirname(os.path.dirname(found))
    return None


# This interpreter's scripts folder (a venv's bin/, where `pip install ninja` puts ninja) on PATH, for
# cpp_extension's `ninja --version` probe when the venv is not activated.
os.environ["PATH"] = sysconfig.get_path("scripts") + os.pathsep + os.environ.get("PATH", "")
# cpp_extension reads CUDA_HOME when imported.
if not os.environ.get("CUDA_HOME") and not os.environ.get("CUDA_PATH"):
    _home = find_cuda_home()
    if _home:
        os.environ["CUDA_HOME"] = _home

import torch  # noqa: E402
import torch.utils.cpp_extension as cpp_ext  # noqa: E402


# ---------------------------------------------------------------------------------------------------
# Results


@dataclass
class Report:
    passed: int = 0
    failed: int = 0
    failures: list = field(default_factory=list)
    verbose: bool = False

    def ok(self, label: str, detail: str = "") -> None:
        self.passed += 1
        if self.verbose:
            print(f"  ok      {label}{'  ' + detail if detail else ''}")

    def fail(self, label: str, detail: str) -> None:
        self.failed += 1
        self.failures.append(f"{label}: {detail}")
        print(f"  FAILED  {label}: {detail}")

    def close(self, label: str, got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> bool:
        """Elementwise |got − want| ≤ atol + rtol·|want| (NaN/Inf must match exactly)."""
        if got is None or want is None:
            if got is None and want is None:
                self.ok(label)
                return True
            self.fail(label, f"one side is None (got {got is None}, want {want is None})")
            return False
        if tuple(got.shape) != tuple(want.shape):
            self.fail(label, f"shape {tuple(got.shape)} != {tuple(want.shape)}")
            return False
        g = got.detach().to("cpu", torch.float64)
        w = want.detach().to("cpu", torch.float64)
        if g.numel() == 0:
            self.ok(label, "empty")
            return True
        finite = torch.isfinite(w)
        same_nonfinite = torch.equal(torch.isfinite(g), finite) and torch.equal(g[~finite].nan_to_num(), w[~finite].nan_to_num())
        if not same_nonfinite:
            bad = int((torch.isfinite(g) != finite).sum())
            self.fail(label, f"{bad} position(s) finite on one side only (first at {first_index(torch.isfinite(g) != finite)})")
            return False
        err = (g - w).abs().where(finite, torch.zeros_like(g))
        tol = atol + rtol * w.abs().where(finite, torch.zeros_like(w))
        over = err > tol
        ratio = err / tol
        worst = first_index(ratio == ratio.max())
        detail = f"max |err| {err.max().item():.3g}, worst err/tol {ratio[worst].item():.3g} at {worst}"
        if bool(over.any()):
            i = first_index(over)
            self.fail(label, f"{int(over.sum())} position(s) out of tolerance (atol {atol:g}, rtol {rtol:g}); {detail}; "
                             f"first at {i}: got {g[i].item():.9g}, want {w[i].item():.9g}")
            return False
        self.ok(label, detail)
        return True

    def true(self, label: str, cond: bool, detail: str = "") -> bool:
        (self.ok if cond else self.fail)(label, detail or "condition false")
        return bool(cond)

    def raises(self, label: str, fn, needle: str) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 — the op's c10::Error surfaces as RuntimeError
            msg = str(e).split("\n")[0]
            self.true(label, needle in msg, f"error message lacks {needle!r}: {msg[:200]}")
            return
        self.fail(label, f"no error raised (expected one containing {needle!r})")


def first_index(mask: torch.Tensor) -> tuple:
    return tuple(int(v) for v in mask.nonzero()[0].tolist())


# Tolerances of the fused op (float32 accumulation) against the float64 composition of the same,
# already rounded inputs: the output rounding of the dtype dominates for the half types.
TOL = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (1e-2, 1.6e-2),
    torch.float16: (1e-3, 2e-3),
}
# CPU against CUDA, both fused: only exp's last-ulp differences, then the output rounding.
TOL_DEVICES = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (1e-6, 2e-6),
    torch.bfloat16: (1e-2, 1.6e-2),
    torch.float16: (1e-3, 2e-3),
}
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


def dname(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def median_ms(fn, device: str, runs: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(runs):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------------
# kl_penalty (ALGORITHMS.md §2, native/ops/kl_penalty/kl_penalty.h)


def kl_penalty_reference(lp, ref, mask=None, old=None, estimator="k3"):
    """Unfused composition: d = clamp(ref − lp, −20, 20); k1 = −d, k2 = ½d², k3 = e^d − d − 1,
    abs = |d|; × exp(clamp(lp − old, −20, 20)) when old is given; masked positions 0 (where)."""
    d = (ref - lp).clamp(-20, 20)
    if estimator == "k1":
        k = -d
    elif estimator == "k2":
        k = 0.5 * d * d
    elif estimator == "k3":
        k = d.exp() - d - 1
    else:
        k = d.abs()
    if old is not None:
        k = k * (lp - old).clamp(-20, 20).exp()
    if mask is not None:
        k = torch.where(mask.bool() if mask.dtype != torch.bool else mask, k, torch.zeros_like(k))
    return k


def kl_penalty_inputs(shape, dtype, seed, extremes):
    """float64 CPU inputs, rounded through `dtype`; masked positions hold garbage (NaN/Inf/huge) that
    must never reach the output. Returns (clean inputs for the reference, garbage-laden ones for the op)."""
    g = torch.Generator().manual_seed(seed)
    lp = torch.randn(shape, generator=g, dtype=torch.float64) - 2
    ref = torch.randn(shape, generator=g, dtype=torch.float64) - 2
    old = lp + 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
    mask = torch.rand(shape, generator=g) > 0.3
    flat = lambda t: t.view(-1)  # noqa: E731
    n = lp.numel()
    if extremes and n >= 8:
        # clamp territory, valid positions: d < −20, d > 20, log-ratio > 20 and < −20 (float32/64 only:
        # e^20·k overflows float16)
        for t in (mask,):
            flat(t)[:4] = True
        flat(lp)[0] = flat(ref)[0] + 30
        flat(lp)[1] = flat(ref)[1] - 25
        flat(old)[2] = flat(lp)[2] - 30
        flat(old)[3] = flat(lp)[3] + 40
    lp, ref, old = (t.to(dtype).to(torch.float64) for t in (lp, ref, old))
    clean = (lp, ref, mask, old)
    dirty = [t.clone() for t in (lp, ref, old)]
    invalid = ~mask
    if bool(invalid.any()):
        garbage = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30], dtype=torch.float64)
        idx = invalid.nonzero(as_tuple=True)
        for j, t in enumerate(dirty):
            t[idx] = garbage[(torch.arange(idx[0].numel()) + j) % 4].to(dtype).to(torch.float64)
    return clean, (dirty[0], dirty[1], mask, dirty[2])


def check_kl_penalty(rep: Report, devices: list[str], args) -> None:
    op = torch.ops.llmrl.kl_penalty
    cases = []
    for dt in DTYPES:
        for est in ("k1", "k2", "k3", "abs"):
            for use_mask in (False, True):
                for use_old in (False, True):
                    cases.append((dt, est, use_mask, use_old))
    for ci, (dt, est, use_mask, use_old) in enumerate(cases):
        shape = (7, 129)
        extremes = dt in (torch.float32, torch.float64)
        (lp, ref, mask, old), (dlp, dref, _, dold) = kl_penalty_inputs(shape, dt, 1000 + ci, extremes)
        if not use_mask:  # garbage only where masked
            dlp, dref, dold = lp, ref, old
        # float64 reference on the rounded, clean inputs; gradient of Σ w·out through autograd
        w = torch.randn(shape, generator=torch.Generator().manual_seed(ci), dtype=torch.float64).to(dt).to(torch.float64)
        x = lp.clone().requires_grad_()
        want = kl_penalty_reference(x, ref, mask if use_mask else None, old if use_old else None, est)
        (want * w).sum().backward()
        want_grad = x.grad
        per_device = {}
        for dev in devices:
            label = f"kl_penalty {dev} {dname(dt)} {est} mask={int(use_mask)} old={int(use_old)}"
            try:
                xs = dlp.to(dev, dt).requires_grad_()
                got = op(xs, dref.to(dev, dt), mask.to(dev) if use_mask else None,
                         dold.to(dev, dt) if use_old else None, est)
                rep.true(f"{label} dtype", got.dtype == dt and got.device.type == dev.split(":")[0],
                         f"output {got.dtype} on {got.device}")
                rep.true(f"{label} requires grad", got.requires_grad, "output does not require grad")
                (got * w.to(dev, dt)).sum().backward()
                atol, rtol = TOL[dt]
                rep.close(f"{label} value", got, want, atol, rtol)
                rep.close(f"{label} grad", xs.grad, want_grad, atol, rtol)
                per_device[dev] = (got.detach().cpu(), xs.grad.cpu())
            except Exception as e:  # noqa: BLE001
                rep.fail(label, f"raised {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        if "cpu" in per_device:
            for dev, (v, gr) in per_device.items():
                if dev == "cpu":
                    continue
                label = f"kl_penalty cpu~{dev} {dname(dt)} {est} mask={int(use_mask)} old={int(use_old)}"
                atol, rtol = TOL_DEVICES[dt]
                rep.close(f"{label} value", v, per_device["cpu"][0], atol, rtol)
                rep.close(f"{label} grad", gr, per_device["cpu"][1], atol, rtol)

    for dev in devices:
        # non-contiguous inputs, a float mask (nonzero = valid), an empty tensor, rank 1 and 3
        g = torch.Generator().manual_seed(7)
        base = torch.randn(33, 17, generator=g, dtype=torch.float64)
        lp, ref, old = base.t(), (base.t() * 0.5 - 1), base.t() + 0.1
        fmask = (torch.rand(17, 33, generator=g) > 0.5).to(torch.float32)
        x = lp.to(dev, torch.float32).requires_grad_()
        got = op(x, ref.to(dev, torch.float32), fmask.to(dev), old.to(dev, torch.float32), "k3")
        got.sum().backward()
        xr = lp.to(torch.float32).to(torch.float64).requires_grad_()
        want = kl_penalty_reference(xr, ref.to(torch.float32).double(), fmask != 0, old.to(torch.float32).double(), "k3")
        want.sum().backward()
        rep.close(f"kl_penalty {dev} non-contiguous + float mask value", got, want, *TOL[torch.float32])
        rep.close(f"kl_penalty {dev} non-contiguous + float mask grad", x.grad, xr.grad, *TOL[torch.float32])
        for shape in ((0, 5), (11,), (2, 3, 5)):
            t = torch.randn(shape, generator=g, dtype=torch.float64)
            got = op(t.to(dev), (t * 0.7).to(dev), None, None, "k2")
            rep.close(f"kl_penalty {dev} shape {shape}", got, kl_penalty_reference(t, t * 0.7, None, None, "k2"), 1e-12, 1e-12)
        a, b = torch.zeros(2, 3, device=dev), torch.zeros(3, 2, device=dev)
        rep.raises(f"kl_penalty {dev} shape error", lambda: op(a, b, None, None, "k3"), "'ref_logprobs' must have the shape")
        rep.raises(f"kl_penalty {dev} estimator error", lambda: op(a, a, None, None, "k9"), "'estimator' must be one of")
        if dev != "cpu":
            rep.raises(f"kl_penalty {dev} device error", lambda: op(a, a.cpu(), None, None, "k3"), "must be on")
            # more elements than one grid of 65535 blocks × 256 threads covers: the grid-stride loop
            n = 65535 * 256 + 4097
            big = torch.randn(n, device=dev, generator=torch.Generator(device=dev).manual_seed(3)) - 2
            bref = big.flip(0)
            got = op(big, bref, None, None, "k3")
            rep.close(f"kl_penalty {dev} {n} elements (grid-stride)", got,
                      kl_penalty_reference(big.double(), bref.double(), None, None, "k3"), *TOL[torch.float32])


def bench_kl_penalty(device: str, runs: int) -> list[tuple]:
    rows = []
    op = torch.ops.llmrl.kl_penalty
    for shape in ((64, 4096), (256, 8192)):
        for dt in (torch.float32, torch.bfloat16):
            g = torch.Generator(device=device).manual_seed(0)
            lp = (torch.randn(shape, device=device, generator=g) - 2).to(dt)
            ref = (torch.randn(shape, device=device, generator=g) - 2).to(dt)
            old = (lp.float() + 0.1 * torch.randn(shape, device=device, generator=g)).to(dt)
            mask = torch.rand(shape, device=device, generator=g) > 0.2
            gout = torch.ones(shape, device=device, dtype=dt)
            xf = lp.clone().requires_grad_()
            xu = lp.clone().requires_grad_()

            def fused_fwd():
                with torch.no_grad():
                    op(lp, ref, mask, old, "k3")

            def unfused_fwd():
                with torch.no_grad():
                    kl_penalty_reference(lp, ref, mask, old, "k3")

            def fused_fb():
                xf.grad = None
                op(xf, ref, mask, old, "k3").backward(gout)

            def unfused_fb():
                xu.grad = None
                kl_penalty_reference(xu, ref, mask, old, "k3").backward(gout)

            desc = f"k3 mask old {'x'.join(map(str, shape))} {dname(dt)}"
            rows.append(("kl_penalty fwd", desc, median_ms(fused_fwd, device, runs), median_ms(unfused_fwd, device, runs)))
            rows.append(("kl_penalty fwd+bwd", desc, median_ms(fused_fb, device, runs), median_ms(unfused_fb, device, runs)))
    return rows


# ---------------------------------------------------------------------------------------------------
# Shared by the op checks below. Each op builds a list of Cases: the float64 composition's values and
# gradients on clean inputs rounded through the case's dtype, and a run(dev) of the fused op (with its
# backward) on inputs that hold garbage wherever the op promises not to read. check_cases compares each
# device against the composition, then every CUDA device against the CPU kernels.


GARBAGE = (float("nan"), float("inf"), -float("inf"), 1e30)


def rounded(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """float64 t rounded through dtype, back in float64: exactly the values the op sees."""
    return t.to(dtype).to(torch.float64)


def with_garbage(t: torch.Tensor, invalid: torch.Tensor, dtype: torch.dtype, shift: int = 0) -> torch.Tensor:
    """A copy of float64 t holding NaN/±Inf/1e30 (rounded through dtype) at the invalid positions."""
    out = t.clone()
    idx = invalid.nonzero(as_tuple=True)
    if idx[0].numel():
        g = torch.tensor(GARBAGE, dtype=torch.float64)
        out[idx] = g[(torch.arange(idx[0].numel()) + shift) % 4].to(dtype).to(torch.float64)
    return out


def acc_of(dt: torch.dtype) -> torch.dtype:
    """The ops' accumulation dtype (and that of their scalar outputs/metrics): float64 for float64 inputs."""
    return torch.float64 if dt == torch.float64 else torch.float32


def randn64(shape, seed: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale + shift


def upstream(shape, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """A random upstream gradient (float64, rounded through dtype so the op and the composition get the same)."""
    return rounded(randn64(shape, seed), dtype)


def seq_mask(B: int, T: int, seed: int, gaps: bool = True, empty_row: int | None = None) -> torch.Tensor:
    """A [B, T] bool completion mask: a random length per row (right padding), optional masked gaps inside,
    optionally one fully masked row."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    m = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    if gaps:
        m &= torch.rand(B, T, generator=g) > 0.15
    m[:, 0] = True  # every row but empty_row has a valid token
    if empty_row is not None:
        m[empty_row] = False
    return m


def as_bool(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask != 0


def close_to(rep: Report, label: str, got, want, atol: float, rtol: float, scaled: bool = False) -> bool:
    """rep.close; scaled: atol grows by rtol·max|want| (outputs of GEMMs, whose summation order differs)."""
    if scaled and want is not None and want.numel():
        w = want.detach().to("cpu", torch.float64)
        fin = w[torch.isfinite(w)]
        atol = atol + rtol * (fin.abs().max().item() if fin.numel() else 0.0)
    return rep.close(label, got, want, atol, rtol)


def expect_out(rep: Report, label: str, t, dtype: torch.dtype, dev: str, requires_grad: bool) -> None:
    """Output dtype and device, and whether autograd tracks it."""
    if t is None:
        rep.fail(label, "output is None")
        return
    rep.true(f"{label} dtype", t.dtype == dtype and t.device.type == dev.split(":")[0],
             f"output {t.dtype} on {t.device}, want {dtype} on {dev}")
    rep.true(f"{label} requires grad={int(requires_grad)}", t.requires_grad == requires_grad,
             f"output requires_grad={t.requires_grad}")


def first_line(e: Exception) -> str:
    return (str(e).splitlines() or [""])[0][:300]


@dataclass
class Case:
    desc: str
    dtype: torch.dtype  # the input dtype: picks TOL / TOL_DEVICES unless overridden
    run: object  # run(dev, rep, label) -> {name: tensor or None}: the fused op and its backward on dev
    want: dict  # {name: float64 CPU tensor or None}: the composition's values and gradients
    tol: dict = field(default_factory=dict)  # {name: (atol, rtol)} overriding TOL[dtype]
    scaled: bool = False  # tolerances relative to max |want| (see close_to)
    dev_tol: tuple | None = None  # CPU ~ CUDA (atol, rtol), default TOL_DEVICES[dtype]


def check_cases(rep: Report, devices: list[str], name: str, cases: list) -> None:
    for case in cases:
        per_device = {}
        for dev in devices:
            label = f"{name} {dev} {dname(case.dtype)} {case.desc}"
            try:
                got = case.run(dev, rep, label)
                for key, want in case.want.items():
                    atol, rtol = case.tol.get(key, TOL[case.dtype])
                    close_to(rep, f"{label} {key}", got.get(key), want, atol, rtol, case.scaled)
                per_device[dev] = {k: (None if v is None else v.detach().cpu()) for k, v in got.items()}
            except Exception as e:  # noqa: BLE001
                rep.fail(label, f"raised {type(e).__name__}: {first_line(e)}")
        if "cpu" in per_device:
            for dev, got in per_device.items():
                if dev == "cpu":
                    continue
                label = f"{name} cpu~{dev} {dname(case.dtype)} {case.desc}"
                atol, rtol = case.dev_tol or TOL_DEVICES[case.dtype]
                for key in case.want:
                    close_to(rep, f"{label} {key}", got.get(key), per_device["cpu"].get(key), atol, rtol, case.scaled)


def bench_sizes(device: str, gpu: tuple, cpu: tuple) -> tuple:
    """Realistic training shapes on a GPU; smaller ones for the CPU kernels (--bench-cpu)."""
    return gpu if device.startswith("cuda") else cpu


def bench_row(rows: list, op: str, desc: str, device: str, runs: int, fused, unfused, warmup: int = 5) -> None:
    rows.append((op, desc, median_ms(fused, device, runs, warmup), median_ms(unfused, device, runs, warmup)))


def half_to_float(t: torch.Tensor) -> torch.Tensor:
    """What an unfused composition does with bfloat16/float16 inputs: compute in float32 (as the fused ops do)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


# ---------------------------------------------------------------------------------------------------
# token_logprobs (ALGORITHMS.md §1, native/ops/token_logprobs/token_logprobs.h)


def logprob_outputs_backward(rep, label, lp, ent, with_entropy, w1, w2, dt, dev):
    """The (logprobs, entropy) outputs of token_logprobs / linear_token_logprobs: checks their dtype and
    device (entropy only when asked for), then backpropagates Σ w1·logp (+ Σ w2·H) into the inputs."""
    expect_out(rep, f"{label} logprobs", lp, dt, dev, True)
    if with_entropy:
        expect_out(rep, f"{label} entropy", ent, dt, dev, True)
    else:
        rep.true(f"{label} no entropy", ent is None, "entropy returned without with_entropy")
    loss = (lp * w1.to(dev, dt)).sum()
    if with_entropy:
        loss = loss + (ent * w2.to(dev, dt)).sum()
    loss.backward()


def token_logprobs_reference(logits, targets, temperature=1.0, with_entropy=True):
    """Unfused composition (test/reference/tokenLogprobs.ts): lsm = log_softmax(logits/τ); logp = gather(lsm);
    H = −Σ e^lsm · max(lsm, −1e4) (the floor keeps 0·(−inf) out for −inf logits), None unless with_entropy."""
    lsm = (logits / temperature).log_softmax(-1)
    logp = lsm.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(lsm.exp() * lsm.clamp(min=-1e4)).sum(-1) if with_entropy else None
    return logp, entropy


def token_logprobs_case(desc, dt, x, t, tau, with_entropy, seed, dirty=None, view=None, tol=None) -> Case:
    """x: float64 logits already rounded through dt (the composition's input); dirty: what the op is given
    (default x); view: a strided view taken of the logits leaf on both sides (e.g. logits[:, :-1])."""
    op = torch.ops.llmrl.token_logprobs
    w1, w2 = upstream(t.shape, seed, dt), upstream(t.shape, seed + 1, dt)
    xr = x.clone().requires_grad_()
    lp, ent = token_logprobs_reference(view(xr) if view else xr, t, tau)
    ((lp * w1).sum() + ((ent * w2).sum() if with_entropy else 0)).backward()
    want = {"logprobs": lp.detach(), "grad logits": xr.grad}
    if with_entropy:
        want["entropy"] = ent.detach()

    def run(dev, rep, label):
        xs = (x if dirty is None else dirty).to(dev, dt, copy=True).requires_grad_()
        lp, ent = op(view(xs) if view else xs, t.to(dev), tau, with_entropy)
        logprob_outputs_backward(rep, label, lp, ent, with_entropy, w1, w2, dt, dev)
        return {"logprobs": lp, "entropy": ent, "grad logits": xs.grad}

    # CPU ~ CUDA: row reductions over V in different orders (SIMD lanes vs warps) move logZ by ~1e-7·|logZ|,
    # and every p_v = e^{z_v − logZ} with it: TOL, not TOL_DEVICES
    return Case(f"{desc} tau={tau:g} entropy={int(with_entropy)}", dt, run, want, tol or {}, dev_tol=TOL[dt])


def check_token_logprobs(rep: Report, devices: list[str], args) -> None:
    op = torch.ops.llmrl.token_logprobs
    cases = []
    ci = 0
    for dt in DTYPES:
        extremes = dt in (torch.float32, torch.float64)
        for lead, v in (((3, 5), 37), ((7,), 1001), ((2, 3), 4099)):  # odd V: below and off the SIMD widths
            for tau, ent in ((1.0, False), (1.0, True), (0.7, True), (1.6, False)):
                ci += 1
                x = rounded(randn64((*lead, v), 2000 + ci, 3.0), dt)
                t = torch.randint(0, v, lead, generator=torch.Generator().manual_seed(ci))
                if extremes:  # one peaked row: e^{z−m} underflows (float64) / is tiny (float32) off the peak.
                    # Not 1e4 in float32: log p is then only known to ulp(1e4/τ) ~ 1e-3, which the entropy
                    # gradient −p·(log p + H) carries at the peak.
                    x.view(-1, v)[0, 1] = 1e4 if dt == torch.float64 else 40.0
                cases.append(token_logprobs_case(f"{'x'.join(map(str, lead))}xV={v}", dt, x, t, tau, ent, 3000 + ci))
        # −inf logits on about half the non-target entries (a masked vocabulary): finite, gradient 0 there
        x = rounded(randn64((4, 6, 37), 77), dt)
        t = torch.randint(0, 37, (4, 6), generator=torch.Generator().manual_seed(77))
        hide = (torch.rand(4, 6, 37, generator=torch.Generator().manual_seed(78)) < 0.5)
        hide &= torch.arange(37) != t.unsqueeze(-1)
        x[hide] = -float("inf")
        cases.append(token_logprobs_case("-inf logits", dt, x, t, 0.6, True, 79))
        # a strided view logits[:, :-1] read in place: the dropped last position holds NaN and is never read
        full = rounded(randn64((2, 9, 40), 80, 2.0), dt)
        t = torch.randint(0, 40, (2, 8), generator=torch.Generator().manual_seed(80))
        dirty = full.clone()
        dirty[:, -1] = float("nan")
        cases.append(token_logprobs_case("view [:, :-1] (NaN in the unread row)", dt, full, t, 1.0, True, 81,
                                         dirty=dirty, view=lambda z: z[:, :-1]))
    # a 150k vocabulary (one row is many CUDA blocks' worth of work)
    for dt in (torch.float32, torch.bfloat16):
        x = rounded(randn64((4, 151936), 90, 2.0), dt)
        t = torch.randint(0, 151936, (4,), generator=torch.Generator().manual_seed(90))
        cases.append(token_logprobs_case("4xV=151936", dt, x, t, 1.0, True, 91))
    check_cases(rep, devices, "token_logprobs", cases)

    for dev in devices:
        x = torch.randn(2, 3, 37, device=dev)
        for bad in (37, -1):
            t = torch.tensor([[0, 1, 2], [3, 4, bad]], device=dev)
            rep.raises(f"token_logprobs {dev} target {bad} error", lambda: op(x, t, 1.0, False),
                       "'targets' must be in [0, V)")
        t = torch.zeros(2, 3, dtype=torch.int32, device=dev)
        rep.raises(f"token_logprobs {dev} int32 targets error", lambda: op(x, t, 1.0, False), "'targets' must be int64")
        t = torch.zeros(2, 3, dtype=torch.int64, device=dev)
        rep.raises(f"token_logprobs {dev} temperature error", lambda: op(x, t, 0.0, False), "temperature")


def bench_token_logprobs(device: str, runs: int) -> list[tuple]:
    rows = []
    op = torch.ops.llmrl.token_logprobs
    n, shapes = bench_sizes(
        device, (8 * 1024, ((32000, torch.float32, False), (32000, torch.bfloat16, True), (151936, torch.float32, False),
                            (151936, torch.bfloat16, False), (151936, torch.bfloat16, True))),
        (256, ((32000, torch.float32, False), (32000, torch.bfloat16, True))))
    for v, dt, ent in shapes:
        g = torch.Generator(device=device).manual_seed(0)
        x = (2 * torch.randn(n, v, device=device, generator=g)).to(dt)
        t = torch.randint(0, v, (n,), device=device, generator=g)
        xf, xu = x.clone().requires_grad_(), x.clone().requires_grad_()
        r = min(runs, 20) if v > 100000 else runs

        def fused_fwd():
            with torch.no_grad():
                op(x, t, 1.0, ent)

        def unfused_fwd():
            with torch.no_grad():
                token_logprobs_reference(half_to_float(x), t, 1.0, ent)

        def fused_fb():
            xf.grad = None
            lp, h = op(xf, t, 1.0, ent)
            (lp.sum() + h.sum() if ent else lp.sum()).backward()

        def unfused_fb():
            xu.grad = None
            lp, h = token_logprobs_reference(half_to_float(xu), t, 1.0, ent)
            (lp.sum() + h.sum() if ent else lp.sum()).backward()

        desc = f"{'logp+entropy' if ent else 'logp'} {n}x{v} {dname(dt)}"
        bench_row(rows, "token_logprobs fwd", desc, device, r, fused_fwd, unfused_fwd)
        bench_row(rows, "token_logprobs fwd+bwd", desc, device, r, fused_fb, unfused_fb)
        x = xf = xu = None  # free before the next shape
    return rows


# ---------------------------------------------------------------------------------------------------
# linear_token_logprobs (ALGORITHMS.md §1b, native/ops/linear_token_logprobs/linear_token_logprobs.h)


def linear_token_logprobs_reference(hidden, weight, targets, bias=None, temperature=1.0, with_entropy=True):
    """Unfused composition (test/reference/linearTokenLogprobs.ts): the whole [N, V] logits hidden·Wᵀ (+bias),
    then token_logprobs_reference on them."""
    z = hidden @ weight.t()
    if bias is not None:
        z = z + bias
    return token_logprobs_reference(z, targets, temperature, with_entropy)


def linear_token_logprobs_case(desc, dt, h, w, b, t, tau, chunk, with_entropy, seed) -> Case:
    """h, w, b: float64, already rounded through dt. Gradients to hidden, weight and bias (when given)."""
    op = torch.ops.llmrl.linear_token_logprobs
    w1, w2 = upstream(t.shape, seed, dt), upstream(t.shape, seed + 1, dt)
    hr, wr = h.clone().requires_grad_(), w.clone().requires_grad_()
    br = b.clone().requires_grad_() if b is not None else None
    lp, ent = linear_token_logprobs_reference(hr, wr, t, br, tau)
    ((lp * w1).sum() + ((ent * w2).sum() if with_entropy else 0)).backward()
    want = {"logprobs": lp.detach(), "grad hidden": hr.grad, "grad weight": wr.grad}
    if with_entropy:
        want["entropy"] = ent.detach()
    if b is not None:
        want["grad bias"] = br.grad

    def run(dev, rep, label):
        hs, ws = h.to(dev, dt, copy=True).requires_grad_(), w.to(dev, dt, copy=True).requires_grad_()
        bs = b.to(dev, dt, copy=True).requires_grad_() if b is not None else None
        lp, ent = op(hs, ws, t.to(dev), bs, tau, chunk, with_entropy)
        logprob_outputs_backward(rep, label, lp, ent, with_entropy, w1, w2, dt, dev)
        return {"logprobs": lp, "entropy": ent, "grad hidden": hs.grad, "grad weight": ws.grad,
                "grad bias": bs.grad if bs is not None else None}

    # GEMM outputs: tolerances relative to the largest value (the summation order differs), also CPU ~ CUDA
    return Case(f"{desc} bias={int(b is not None)} tau={tau:g} chunk={chunk} entropy={int(with_entropy)}", dt, run,
                want, scaled=True, dev_tol=TOL[dt])


def check_linear_token_logprobs(rep: Report, devices: list[str], args) -> None:
    op = torch.ops.llmrl.linear_token_logprobs
    cases = []
    ci = 0
    hd, v = 32, 300
    for dt in DTYPES:
        for lead in ((41,), (3, 9)):  # 41 and 27 rows: chunk 7 leaves a partial last chunk
            for chunk in (0, 7):  # one chunk (auto); several (grad_W accumulated across chunks)
                for with_bias, tau, ent in ((False, 1.0, False), (True, 0.8, True)):
                    ci += 1
                    h = rounded(randn64((*lead, hd), 4000 + ci, 0.5), dt)
                    w = rounded(randn64((v, hd), 4100 + ci, 0.5), dt)
                    b = rounded(randn64((v,), 4200 + ci, 0.1), dt) if with_bias else None
                    t = torch.randint(0, v, lead, generator=torch.Generator().manual_seed(ci))
                    cases.append(linear_token_logprobs_case("x".join(map(str, (*lead, hd))) + f" V={v}", dt, h, w, b, t,
                                                            tau, chunk, ent, 4300 + ci))
    # a −inf bias on half the vocabulary (targets in the other half): finite, zero gradient to those rows of W
    for dt in (torch.float64, torch.float32):
        h = rounded(randn64((12, 16), 4400), dt)
        w = rounded(randn64((40, 16), 4401, 0.5), dt)
        b = torch.zeros(40, dtype=torch.float64)
        b[20:] = -float("inf")
        t = torch.randint(0, 20, (12,), generator=torch.Generator().manual_seed(4402))
        cases.append(linear_token_logprobs_case("12x16 V=40 -inf bias", dt, h, w, b, t, 0.9, 4, True, 4403))
    check_cases(rep, devices, "linear_token_logprobs", cases)

    for dev in devices:
        h, w = torch.randn(3, 8, device=dev), torch.randn(11, 8, device=dev)
        t = torch.tensor([0, 5, 11], device=dev)
        rep.raises(f"linear_token_logprobs {dev} target error", lambda: op(h, w, t, None, 1.0, 0, False),
                   "'targets' must be in [0, V)")
        t = torch.tensor([0, 5, 10], device=dev)
        rep.raises(f"linear_token_logprobs {dev} shape error", lambda: op(h, w[:, :7], t, None, 1.0, 0, False),
                   "'weight' must have shape [V, H]")


def bench_linear_token_logprobs(device: str, runs: int) -> list[tuple]:
    rows = []
    op = torch.ops.llmrl.linear_token_logprobs
    shapes = bench_sizes(device, ((4096, 2048, 32000, torch.float32), (8 * 1024, 4096, 151936, torch.bfloat16)),
                         ((256, 512, 8192, torch.float32), (256, 512, 8192, torch.bfloat16)))
    for n, hd, v, dt in shapes:
        g = torch.Generator(device=device).manual_seed(0)
        h = (torch.randn(n, hd, device=device, generator=g) * 0.5).to(dt)
        w = (torch.randn(v, hd, device=device, generator=g) * hd ** -0.5).to(dt)
        t = torch.randint(0, v, (n,), device=device, generator=g)
        hf, wf = h.clone().requires_grad_(), w.clone().requires_grad_()
        hu, wu = h.clone().requires_grad_(), w.clone().requires_grad_()
        r = min(runs, 10)

        def fused_fwd():
            with torch.no_grad():
                op(h, w, t, None, 1.0, 0, False)

        def unfused_fwd():  # the [N, V] logits in the input dtype (as a model's lm_head), softmax in float32
            with torch.no_grad():
                token_logprobs_reference(half_to_float(h @ w.t()), t, 1.0, False)

        def fused_fb():
            hf.grad = wf.grad = None
            op(hf, wf, t, None, 1.0, 0, False)[0].sum().backward()

        def unfused_fb():
            hu.grad = wu.grad = None
            token_logprobs_reference(half_to_float(hu @ wu.t()), t, 1.0, False)[0].sum().backward()

        desc = f"logp N={n} H={hd} V={v} {dname(dt)} chunk=auto"
        bench_row(rows, "linear_token_logprobs fwd", desc, device, r, fused_fwd, unfused_fwd, warmup=2)
        bench_row(rows, "linear_token_logprobs fwd+bwd", desc, device, r, fused_fb, unfused_fb, warmup=2)
        h = w = hf = wf = hu = wu = None  # free before the next shape
    return rows


# ---------------------------------------------------------------------------------------------------
# gae (ALGORITHMS.md §3a, native/ops/gae/gae.h)


def gae_reference(rewards, values, mask, gamma=1.0, lam=0.95):
    """Unfused composition (test/reference/gae.ts, vectorised over rows): a reverse scan over t in which a
    masked position carries the next valid position's value and advantage; masked outputs 0."""
    m = as_bool(mask)
    zero = rewards.new_zeros(rewards.shape[0])
    next_v, next_a = zero, zero
    adv = [zero] * rewards.shape[1]
    for t in reversed(range(rewards.shape[1])):
        valid = m[:, t]
        a = rewards[:, t] + gamma * next_v - values[:, t] + gamma * lam * next_a
        adv[t] = torch.where(valid, a, zero)
        next_v = torch.where(valid, values[:, t], next_v)
        next_a = torch.where(valid, a, next_a)
    adv = torch.stack(adv, 1)
    return adv, torch.where(m, adv + values, torch.zeros_like(adv))


def gae_case(desc, dt, r, v, mask, gamma, lam, dirty=None, tol=None) -> Case:
    op = torch.ops.llmrl.gae
    a, ret = gae_reference(r, v, mask, gamma, lam)

    def run(dev, rep, label):
        rd, vd = dirty if dirty is not None else (r, v)
        rs, vs = rd.to(dev, dt, copy=True).requires_grad_(), vd.to(dev, dt, copy=True).requires_grad_()
        a, ret = op(rs, vs, mask.to(dev), gamma, lam)
        expect_out(rep, f"{label} advantages", a, dt, dev, False)  # targets: never tracked by autograd
        expect_out(rep, f"{label} returns", ret, dt, dev, False)
        return {"advantages": a, "returns": ret}

    # CPU ~ CUDA: a sequential scan whose multiply-adds nvcc may contract to FMAs: TOL, not TOL_DEVICES
    return Case(f"{desc} gamma={gamma:g} lam={lam:g}", dt, run, {"advantages": a, "returns": ret}, tol or {},
                dev_tol=TOL[dt])


def check_gae(rep: Report, devices: list[str], args) -> None:
    op = torch.ops.llmrl.gae
    cases = []
    ci = 0
    B, T = 6, 37
    for dt in DTYPES:
        for gamma, lam in ((1.0, 0.95), (0.99, 0.9), (1.0, 0.0)):
            for gaps in (False, True):
                ci += 1
                r = rounded(randn64((B, T), 5000 + ci, 0.5), dt)
                v = rounded(randn64((B, T), 5100 + ci), dt)
                if gaps:  # right padding, masked gaps inside rows, one fully masked row
                    mask = seq_mask(B, T, 5200 + ci, gaps=True, empty_row=4)
                    dirty = (with_garbage(r, ~mask, dt), with_garbage(v, ~mask, dt, 1))
                    desc = "gaps+padding (garbage)"
                else:
                    mask, dirty, desc = torch.ones(B, T, dtype=torch.bool), None, "all valid"
                cases.append(gae_case(f"{B}x{T} {desc}", dt, r, v, mask, gamma, lam, dirty))
    # a long row (T = 4099) and a float mask
    mask = seq_mask(3, 4099, 5300).to(torch.float32)
    r, v = randn64((3, 4099), 5301, 0.1), randn64((3, 4099), 5302)
    cases.append(gae_case("3x4099 float mask", torch.float64, r, v, mask, 0.999, 0.95))
    check_cases(rep, devices, "gae", cases)

    for dev in devices:
        # ALGORITHMS.md §3a: λ=0, r=[0,0,5], V=[1,2,3], γ=1 → A=[1,1,2]; and over a masked gap
        r = torch.tensor([[0.0, 0, 5], [0, 9, 5]], dtype=torch.float64, device=dev)
        v = torch.tensor([[1.0, 2, 3], [1, float("nan"), 3]], dtype=torch.float64, device=dev)
        m = torch.tensor([[True, True, True], [True, False, True]], device=dev)
        a, ret = op(r, v, m, 1.0, 0.0)
        rep.close(f"gae {dev} closed form A", a, torch.tensor([[1.0, 1, 2], [2, 0, 2]], dtype=torch.float64), 1e-12, 0)
        rep.close(f"gae {dev} closed form returns", ret, torch.tensor([[2.0, 3, 5], [3, 0, 5]], dtype=torch.float64), 1e-12, 0)
        a2, b2 = torch.zeros(2, 3, device=dev), torch.zeros(3, 2, device=dev)
        rep.raises(f"gae {dev} shape error", lambda: op(a2, b2, a2 != 0, 1.0, 0.95), "'values' must have the shape")


def bench_gae(device: str, runs: int) -> list[tuple]:
    rows = []
    op = torch.ops.llmrl.gae
    for shape in bench_sizes(device, ((64, 4096), (256, 1024)), ((16, 1024),)):
        g = torch.Generator(device=device).manual_seed(0)
        r = 0.1 * torch.randn(shape, device=device, generator=g)
        v = torch.randn(shape, device=device, generator=g)
        m = torch.rand(shape, device=device, generator=g) > 0.1

        def fused():
            op(r, v, m, 1.0, 0.95)

        def unfused():  # one reverse step per position: T small kernels each
            gae_reference(r, v, m, 1.0, 0.95)

        desc = f"{'x'.join(map(str, shape))} float32 (composed: a loop over T; at most 5 runs)"
        rows.append(("gae", desc, median_ms(fused, device, runs), median_ms(unfused, device, min(runs, 5), 1)))
    return rows


# ---------------------------------------------------------------------------------------------------
# masked_whiten (ALGORITHMS.md §3c, native/ops/masked_whiten/masked_whiten.h)


def masked_whiten_reference(x, mask, shift_mean=True):
    """Unfused composition (test/reference/maskedWhiten.ts, TRL's masked_whiten): μ and the Bessel variance
    over the valid tokens, (x − μ)/sqrt(var + 1e-8) (+ μ when not shift_mean), masked positions 0."""
    m = as_bool(mask)
    zero = torch.zeros_like(x)
    n = m.sum().to(x.dtype)
    mean = torch.where(m, x, zero).sum() / n
    var = torch.where(m, x - mean, zero).square().sum() / (n - 1)
    y = (x - mean) * (var + 1e-8).rsqrt()
    if not shift_mean:
        y = y + mean
    return torch.where(m, y, zero)


def masked_whiten_case(desc, dt, x, mask, shift_mean, seed, dirty=None, transpose=False) -> Case:
    """transpose: the op gets x as a transposed (non-contiguous) view; x, mask are given in the viewed layout."""
    op = torch.ops.llmrl.masked_whiten
    w = upstream(x.shape, seed, dt)
    xr = x.clone().requires_grad_()
    y = masked_whiten_reference(xr, mask, shift_mean)
    (y * w).sum().backward()

    def run(dev, rep, label):
        src = x if dirty is None else dirty
        if transpose:
            leaf = src.t().contiguous().to(dev, dt, copy=True).requires_grad_()
            xs = leaf.t()
        else:
            leaf = xs = src.to(dev, dt, copy=True).requires_grad_()
        y = op(xs, mask.to(dev), shift_mean)
        expect_out(rep, f"{label} output", y, dt, dev, True)
        (y * w.to(dev, dt)).sum().backward()
        return {"value": y, "grad": leaf.grad.t() if transpose else leaf.grad}

    return Case(f"{desc} shift_mean={int(shift_mean)}", dt, run, {"value": y.detach(), "grad": xr.grad})


def check_masked_whiten(rep: Report, devices: list[str], args) -> None:
    op = torch.ops.llmrl.masked_whiten
    cases = []
    ci = 0
    for dt in DTYPES:
        for shift_mean in (True, False):
            for float_mask in (False, True):
                ci += 1
                x = rounded(randn64((7, 129), 6000 + ci, 3.0, 1.5), dt)
                mask = seq_mask(7, 129, 6100 + ci, empty_row=2)
                dirty = with_garbage(x, ~mask, dt)
                if float_mask:
                    mask = mask.to(torch.float32) * 2.5  # nonzero = valid
                cases.append(masked_whiten_case(f"7x129 {'float' if float_mask else 'bool'} mask (garbage)", dt, x, mask,
                                                shift_mean, 6200 + ci, dirty))
    for dt in (torch.float64, torch.float32):
        # many CUDA blocks of partial sums; a transposed view
        x = rounded(randn64((64, 4099), 6300, 2.0, -0.7), dt)
        mask = torch.rand(64, 4099, generator=torch.Generator().manual_seed(6301)) > 0.3
        cases.append(masked_whiten_case("64x4099 (garbage)", dt, x, mask, True, 6302, with_garbage(x, ~mask, dt)))
        x = rounded(randn64((33, 17), 6303), dt)
        mask = torch.rand(33, 17, generator=torch.Generator().manual_seed(6304)) > 0.3
        cases.append(masked_whiten_case("33x17 transposed view", dt, x, mask, False, 6305, transpose=True))
    check_cases(rep, devices, "masked_whiten", cases)

    for dev in devices:
        # N == 1: var = 0, y = 0 (x with shift_mean=False), gradient 0 (g); N == 0: zeros
        x = torch.tensor([[2.0, float("nan"), 7.0]], dtype=torch.float64, device=dev)
        for m, shift, want_y, want_g in (([True, False, False], True, [0.0, 0, 0], [0.0, 0, 0]),
                                         ([True, False, False], False, [2.0, 0, 0], [1.5, 0, 0]),
                                         ([False, False, False], True, [0.0, 0, 0], [0.0, 0, 0])):
            xs = x.clone().requires_grad_()
            y = op(xs, torch.tensor([m], device=dev), shift)
            (y * 1.5).sum().backward()
            what = f"N={sum(m)} shift_mean={int(shift)}"
            rep.close(f"masked_whiten {dev} {what} value", y, torch.tensor([want_y], dtype=torch.float64), 1e-12, 0)
            rep.close(f"masked_whiten {dev} {what} grad", xs.grad, torch.tensor([want_g], dtype=torch.float64), 1e-12, 0)
        a = torch.zeros(2, 3, device=dev)
        rep.raises(f"masked_whiten {dev} shape error", lambda: op(a, torch.ones(3, 2, dtype=torch.bool, device=dev), True),
                   "'mask' must have the shape of 'x'")


def bench_masked_whiten(device: str, runs: int) -> list[tuple]:
    rows = []
    op = torch.ops.llmrl.masked_whiten
    for shape in bench_sizes(device, ((64, 4096), (256, 8192)), ((64, 4096),)):
        for dt in (torch.float32, torch.bfloat16):
            g = torch.Generator(device=device).manual_seed(0)
            x = torch.randn(shape, device=device, generator=g).to(dt)
            m = torch.rand(shape, device=device, generator=g) > 0.2
            gout = torch.ones(shape, device=device, dtype=dt)
            xf, xu = x.clone().requires_grad_(), x.clone().requires_grad_()

            def fused_fwd():
                with torch.no_grad():
                    op(x, m, True)

            def unfused_fwd():
                with torch.no_grad():
                    masked_whiten_reference(half_to_float(x), m)

            def fused_fb():
                xf.grad = None
                op(xf, m, True).backward(gout)

            def unfused_fb():
                xu.grad = None
                masked_whiten_reference(half_to_float(xu), m).backward(gout.float())

            desc = f"{'x'.join(map(str, shape))} {dname(dt)}"
            bench_row(rows, "masked_whiten fwd", desc, device, runs, fused_fwd, unfused_fwd)
            bench_row(rows, "masked_whiten fwd+bwd", desc, device, runs, fused_fb, unfused_fb)
    return rows


# ---------------------------------------------------------------------------------------------------
# group_advantages (ALGORITHMS.md §3d, native/ops/group_advantages/group_advantages.h)


def group_advantages_reference(rewards, group_size, scale="group"):
    """Unfused composition (test/reference/groupAdvantages.ts, vectorised over groups): per group of G, μ and
    the Bessel σ over the non-NaN rewards (σ = 0 for ≤ 1 of them); group: (R − μ)/(σ + 1e-4), batch: σ of all
    valid rewards, none: R − μ, rloo: R − (Σ others)/(n − 1) (0 for n ≤ 1); NaN rewards get A = 0.
    Returns (advantages [B], per-group σ [B/G])."""
    def nan_stats(x, dim):
        valid = ~torch.isnan(x)
        n = valid.sum(dim, keepdim=True).to(x.dtype)
        total = torch.where(valid, x, torch.zeros_like(x)).sum(dim, keepdim=True)
        mean = total / n.clamp(min=1)
        sq = torch.where(valid, (x - mean).square(), torch.zeros_like(x)).sum(dim, keepdim=True)
        std = torch.where(n > 1, (sq / (n - 1).clamp(min=1)).sqrt(), torch.zeros_like(sq))
        return valid, n, total, mean, std

    r = rewards.view(-1, group_size)
    valid, n, total, mean, std = nan_stats(r, 1)
    if scale == "group":
        a = (r - mean) / (std + 1e-4)
    elif scale == "batch":
        a = (r - mean) / (nan_stats(rewards, 0)[4] + 1e-4)
    elif scale == "none":
        a = r - mean
    else:
        a = torch.where(n > 1, r - (total - r) / (n - 1).clamp(min=1), torch.zeros_like(r))
    return torch.where(valid, a, torch.zeros_like(a)).reshape(-1), std.reshape(-1)


def group_rewards(groups: int, G: int, seed: int) -> torch.Tensor:
    """Rewards [groups·G] as reward functions give them: a group of only NaN, a group with one valid reward,
    a constant group (σ = 0), binary groups with a NaN, the rest Gaussian with ~10% NaN."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(groups, G, generator=g, dtype=torch.float64) * 1.5 + 0.3
    r[torch.rand(groups, G, generator=g) < 0.1] = float("nan")
    r[0] = float("nan")
    r[1, 1:] = float("nan")
    r[2] = 1.0
    r[3:5] = (torch.rand(2, G, generator=g) < 0.5).to(torch.float64)
    r[3, 0] = float("nan")
    return r.reshape(-1)


def group_advantages_case(desc, dt, r, G, scale) -> Case:
    op = torch.ops.llmrl.group_advantages
    a, sd = group_advantages_reference(r, G, scale)

    def run(dev, rep, label):
        rs = r.to(dev, dt, copy=True).requires_grad_()
        a, sd = op(rs, G, scale)
        expect_out(rep, f"{label} advantages", a, dt, dev, False)  # targets: never tracked by autograd
        expect_out(rep, f"{label} group_std", sd, dt, dev, False)
        return {"advantages": a, "group_std": sd}

    return Case(f"{desc} G={G} scale={scale}", dt, run, {"advantages": a, "group_std": sd})


def check_group_advantages(rep: Report, devices: list[str], args) -> None:
    op = torch.ops.llmrl.group_advantages
    cases = []
    ci = 0
    for dt in DTYPES:
        for G in (4, 8):
            for scale in ("group", "batch", "none", "rloo"):
                ci += 1
                r = rounded(group_rewards(64 // G, G, 7000 + ci), dt)
                cases.append(group_advantages_case("B=64 with NaN rewards", dt, r, G, scale))
    for scale in ("group", "batch"):  # many groups (CUDA: many threads, a multi-warp batch std)
        r = rounded(group_rewards(4096, 16, 7100), torch.float32)
        cases.append(group_advantages_case("B=65536 with NaN rewards", torch.float32, r, 16, scale))
    check_cases(rep, devices, "group_advantages", cases)

    for dev in devices:
        # closed form: G = 3, rewards [1, 2, 6] → μ = 3, σ = √7; rloo: 1 − 4 = −3, 2 − 3.5, 6 − 1.5
        r = torch.tensor([1.0, 2.0, 6.0], dtype=torch.float64, device=dev)
        a, sd = op(r, 3, "rloo")
        rep.close(f"group_advantages {dev} closed form rloo", a, torch.tensor([-3.0, -1.5, 4.5], dtype=torch.float64), 1e-12, 0)
        rep.close(f"group_advantages {dev} closed form std", sd, torch.tensor([7.0 ** 0.5], dtype=torch.float64), 1e-12, 0)
        r = torch.zeros(6, device=dev)
        rep.raises(f"group_advantages {dev} group_size 1 error", lambda: op(r, 1, "group"), "must be at least 2")
        rep.raises(f"group_advantages {dev} divisibility error", lambda: op(r, 4, "none"), "must be divisible by 'group_size'")
        rep.raises(f"group_advantages {dev} scale error", lambda: op(r, 3, "zscore"), "'scale' must be one of")


def bench_group_advantages(device: str, runs: int) -> list[tuple]:
    rows = []
    op = torch.ops.llmrl.group_advantages
    for B, G in bench_sizes(device, ((1024, 16), (65536, 16)), ((1024, 16), (65536, 16))):
        g = torch.Generator(device=device).manual_seed(0)
        r = torch.randn(B, device=device, generator=g)
        r[torch.rand(B, device=device, generator=g) < 0.05] = float("nan")
        for scale in ("group", "rloo"):
            bench_row(rows, "group_advantages", f"B={B} G={G} {scale} float32 (NaN rewards)", device, runs,
                      lambda: op(r, G, scale), lambda: group_advantages_reference(r, G, scale))
    return rows


# ---------------------------------------------------------------------------------------------------
# clipped_surrogate, sequence_clipped_surrogate (ALGORITHMS.md §4, native/ops/clipped_surrogate/*.h)


def surrogate_reference(w, A, eps_low=0.2, eps_high=None, dual_clip=None, delta=None):
    """−min(w_u·A, clamp(w, 1−ε_low, 1+ε_high)·A), w_u = min(w, δ); dual-clip c: A < 0 → min(L, −c·A)
    (test/reference/clippedSurrogate.ts; torch.minimum splits the gradient on ties, as the op does)."""
    eh = eps_low if eps_high is None else eps_high
    wu = w if delta is None else w.clamp(max=delta)
    L = -torch.minimum(wu * A, w.clamp(1 - eps_low, 1 + eh) * A)
    if dual_clip is not None:
        L = torch.where(A < 0, torch.minimum(L, A * -dual_clip), L)
    return L


def clipped_surrogate_reference(lp, old, adv, mask, level="token", eps_low=0.2, eps_high=None, dual_clip=None,
                                delta=None):
    """Per-token loss [B, T] (masked 0) at level 'token' (§4a), 'sequence' (GSPO: log s_b = masked mean of the
    clamped log-ratios, NOT detached; each valid token carries L_b) or 'sequence_token' (value s_b, gradient
    per token: log w = sg[log s_b] + ℓ − sg[ℓ])."""
    m = as_bool(mask)
    zero = torch.zeros_like(lp)
    A = adv.unsqueeze(1).expand_as(lp) if adv.dim() == 1 else adv
    o = dict(eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip, delta=delta)
    if level == "token":
        L = surrogate_reference((lp - old).clamp(-20, 20).exp(), A, **o)
    else:
        x = torch.where(m, (lp - old).clamp(-20, 20), zero)
        log_s = x.sum(1) / m.sum(1).to(lp.dtype).clamp(min=1)
        if level == "sequence":
            L = surrogate_reference(log_s.exp(), adv, **o).unsqueeze(1).expand_as(lp)
        else:
            L = surrogate_reference((log_s.detach().unsqueeze(1) + lp - lp.detach()).exp(), A, **o)
    return torch.where(m, L, zero)


def surrogate_metrics_reference(lp, old, adv, mask, level="token", eps_low=0.2, eps_high=None):
    """§4c metrics [clip_frac, clip_frac_low, clip_frac_high, approx_kl] (test/reference/clippedSurrogate.ts):
    masked token means ('token', 'sequence_token' with w = s_b), sequence means over valid rows ('sequence');
    approx_kl of the raw log-ratio; 0 when nothing is valid."""
    eh = eps_low if eps_high is None else eps_high
    m = as_bool(mask)
    zero = torch.zeros_like(lp)
    sq = torch.where(m, (lp - old).square(), zero)
    x = torch.where(m, (lp - old).clamp(-20, 20), zero)
    n = m.sum(1).to(lp.dtype)
    if level in ("token", "sequence_token"):
        if level == "token":
            w = (lp - old).clamp(-20, 20).exp()
        else:
            w = (x.sum(1) / n.clamp(min=1)).exp().unsqueeze(1).expand_as(lp)
        A = adv.unsqueeze(1).expand_as(lp) if adv.dim() == 1 else adv
        N = m.sum().to(lp.dtype).clamp(min=1)
        low = ((w < 1 - eps_low) & (A < 0) & m).sum().to(lp.dtype) / N
        high = ((w > 1 + eh) & (A > 0) & m).sum().to(lp.dtype) / N
        kl = 0.5 * sq.sum() / N
    else:
        valid = n > 0
        S = valid.sum().to(lp.dtype).clamp(min=1)
        s = (x.sum(1) / n.clamp(min=1)).exp()
        low = ((s < 1 - eps_low) & (adv < 0) & valid).sum().to(lp.dtype) / S
        high = ((s > 1 + eh) & (adv > 0) & valid).sum().to(lp.dtype) / S
        kl = 0.5 * torch.where(valid, sq.sum(1) / n.clamp(min=1), torch.zeros_like(n)).sum() / S
    return torch.stack([low + high, low, high, kl])


METRICS = ("clip_frac", "clip_frac_low", "clip_frac_high", "approx_kl")


def surrogate_inputs(B, T, dt, seed, extremes, per_token_adv, on_policy, row_offsets=False):
    """float64 inputs rounded through dt: (clean (lp, old, adv, mask), dirty (lp, old, adv)). Masked positions
    of the dirty ones hold garbage; with [B] advantages the fully masked row's advantage is NaN."""
    lp = rounded(randn64((B, T), seed, 0.5, -1.5), dt)
    noise = randn64((B, T), seed + 1, 0.5)
    if row_offsets:  # sequence ratios s_b spread over e^{±1.5}: clipped on both sides, dual-clip and δ territory
        noise = noise * 0.3 + torch.linspace(-1.5, 1.5, B, dtype=torch.float64)[torch.randperm(B, generator=torch.Generator().manual_seed(seed))].unsqueeze(1)
    old = lp.clone() if on_policy else rounded(lp + noise, dt)
    adv = rounded(randn64((B, T) if per_token_adv else (B,), seed + 2), dt)
    mask = seq_mask(B, T, seed + 3, empty_row=B - 2)
    if extremes:  # clamp territory at valid positions: |ℓ − ℓ_old| > 20 (no gradient through the clamp)
        mask[0, :3] = True
        old[0, 0], old[0, 1], old[0, 2] = lp[0, 0] - 30, lp[0, 1] + 25, lp[0, 2] - 21
        old = rounded(old, dt)
    dlp, dold = with_garbage(lp, ~mask, dt), with_garbage(old, ~mask, dt, 1)
    if per_token_adv:
        dadv = with_garbage(adv, ~mask, dt, 2)
    else:
        dadv = adv.clone()
        dadv[B - 2] = float("nan")  # the advantage of the fully masked row
    return (lp, old, adv, mask), (dlp, dold, dadv)


def surrogate_case(name, desc, dt, clean, dirty, level, opts, seed) -> Case:
    """The op's per-token loss, its gradient w.r.t. logprobs (random upstream) and the four metrics."""
    op = getattr(torch.ops.llmrl, name)
    lp, old, adv, mask = clean
    w = upstream(lp.shape, seed, dt)
    x = lp.clone().requires_grad_()
    # on-policy: ℓ_old = sg[ℓ], the same values
    old_r = x.detach() if dirty[1] is None else old
    L = clipped_surrogate_reference(x, old_r, adv, mask, level, **opts)
    (L * w).sum().backward()
    stats = surrogate_metrics_reference(lp, old_r, adv, mask, level, opts["eps_low"], opts.get("eps_high"))
    want = {"loss": L.detach(), "grad": x.grad, **{k: stats[i] for i, k in enumerate(METRICS)}}
    acc = acc_of(dt)
    args = (opts["eps_low"], opts.get("eps_high", opts["eps_low"]), opts.get("dual_clip"), opts.get("delta"))
    if name == "sequence_clipped_surrogate":
        args = args + (level,)

    def run(dev, rep, label):
        xs = dirty[0].to(dev, dt, copy=True).requires_grad_()
        olds = xs.detach() if dirty[1] is None else dirty[1].to(dev, dt)
        out = op(xs, olds, dirty[2].to(dev, dt), mask.to(dev), *args)
        expect_out(rep, f"{label} loss", out[0], dt, dev, True)
        for k, t in zip(METRICS, out[1:]):
            expect_out(rep, f"{label} {k}", t, acc, dev, False)
        (out[0] * w.to(dev, dt)).sum().backward()
        return {"loss": out[0], "grad": xs.grad, **dict(zip(METRICS, out[1:]))}

    # CPU ~ CUDA: the sequence levels sum log-ratios per row in different orders: TOL, not TOL_DEVICES
    dev_tol = TOL[dt] if name == "sequence_clipped_surrogate" else None
    return Case(desc, dt, run, want, {k: TOL[acc] for k in METRICS}, dev_tol=dev_tol)


SURROGATE_OPTS = (
    ("eps=0.2", dict(eps_low=0.2, eps_high=0.2)),
    ("clip-higher 0.2/0.28", dict(eps_low=0.2, eps_high=0.28)),
    ("dual-clip 3", dict(eps_low=0.2, eps_high=0.2, dual_clip=3.0)),
    ("clip-higher+dual-clip 3+delta 1.5", dict(eps_low=0.2, eps_high=0.28, dual_clip=3.0, delta=1.5)),
)


def check_clipped_surrogate(rep: Report, devices: list[str], args) -> None:
    op = torch.ops.llmrl.clipped_surrogate
    cases = []
    ci = 0
    B, T = 7, 129
    for dt in DTYPES:
        extremes = dt in (torch.float32, torch.float64)
        for oname, opts in SURROGATE_OPTS:
            for per_token in (False, True):
                ci += 1
                clean, dirty = surrogate_inputs(B, T, dt, 8000 + 10 * ci, extremes, per_token, False)
                desc = f"{B}x{T} {oname} adv={'[B,T]' if per_token else '[B]'} (garbage)"
                cases.append(surrogate_case("clipped_surrogate", desc, dt, clean, dirty, "token", opts, 8500 + ci))
        for oname, opts in SURROGATE_OPTS[::2]:  # on-policy (ℓ_old = sg[ℓ]): w = 1, ties split the gradient
            ci += 1
            clean, dirty = surrogate_inputs(B, T, dt, 8000 + 10 * ci, False, True, True)
            cases.append(surrogate_case("clipped_surrogate", f"{B}x{T} {oname} on-policy", dt, clean,
                                        (dirty[0], None, dirty[2]), "token", opts, 8500 + ci))
    check_cases(rep, devices, "clipped_surrogate", cases)

    for dev in devices:
        # ALGORITHMS.md §4a: ε = 0.2, w = [0.5, 1, 1.5], A = [1, −1, 2] → token mean −0.6333…
        lp = torch.tensor([[0.5, 1.0, 1.5]], dtype=torch.float64, device=dev).log()
        out = op(lp, torch.zeros_like(lp), torch.tensor([[1.0, -1, 2]], dtype=torch.float64, device=dev),
                 torch.ones_like(lp, dtype=torch.bool), 0.2, 0.2, None, None)
        rep.close(f"clipped_surrogate {dev} closed form", out[0].mean(), torch.tensor(-1.9 / 3, dtype=torch.float64), 1e-12, 0)
        a = torch.zeros(2, 3, device=dev)
        rep.raises(f"clipped_surrogate {dev} advantages shape error",
                   lambda: op(a, a, torch.zeros(3, device=dev), a != 0, 0.2, 0.2, None, None), "'advantages' must have shape")
        rep.raises(f"clipped_surrogate {dev} dual_clip error",
                   lambda: op(a, a, a, a != 0, 0.2, 0.2, 0.5, None), "'dual_clip' must be a finite number > 1")
        if dev != "cpu":
            rep.raises(f"clipped_surrogate {dev} device error", lambda: op(a, a.cpu(), a, a != 0, 0.2, 0.2, None, None),
                       "must be on")


def bench_surrogate(name: str, levels, device: str, runs: int) -> list[tuple]:
    rows = []
    op = getattr(torch.ops.llmrl, name)
    for shape in bench_sizes(device, ((64, 4096), (256, 8192)), ((64, 4096),)):
        for dt in (torch.float32, torch.bfloat16):
            for level in levels:
                g = torch.Generator(device=device).manual_seed(0)
                lp = (torch.randn(shape, device=device, generator=g) * 0.5 - 1.5).to(dt)
                old = (lp.float() + 0.3 * torch.randn(shape, device=device, generator=g)).to(dt)
                adv = torch.randn(shape[0], device=device, generator=g).to(dt)
                m = torch.rand(shape, device=device, generator=g) > 0.2
                gout = torch.ones(shape, device=device, dtype=dt)
                extra = (level,) if name == "sequence_clipped_surrogate" else ()
                xf, xu = lp.clone().requires_grad_(), lp.clone().requires_grad_()
                opts = dict(eps_low=0.2, eps_high=0.28)

                def fused_fwd():
                    with torch.no_grad():
                        op(lp, old, adv, m, 0.2, 0.28, None, None, *extra)

                def unfused_fwd():  # per-token loss and the four metrics (as 0-d tensors: no host sync)
                    with torch.no_grad():
                        a, b, c = half_to_float(lp), half_to_float(old), half_to_float(adv)
                        clipped_surrogate_reference(a, b, c, m, level, **opts)
                        surrogate_metrics_reference(a, b, c, m, level, 0.2, 0.28)

                def fused_fb():
                    xf.grad = None
                    op(xf, old, adv, m, 0.2, 0.28, None, None, *extra)[0].backward(gout)

                def unfused_fb():
                    xu.grad = None
                    b, c = half_to_float(old), half_to_float(adv)
                    clipped_surrogate_reference(half_to_float(xu), b, c, m, level, **opts).backward(gout.float())
                    with torch.no_grad():
                        surrogate_metrics_reference(half_to_float(lp), b, c, m, level, 0.2, 0.28)

                desc = f"{level} eps 0.2/0.28 {'x'.join(map(str, shape))} {dname(dt)}"
                bench_row(rows, f"{name} fwd", desc, device, runs, fused_fwd, unfused_fwd)
                bench_row(rows, f"{name} fwd+bwd", desc, device, runs, fused_fb, unfused_fb)
    return rows


def bench_clipped_surrogate(device: str, runs: int) -> list[tuple]:
    return bench_surrogate("clipped_surrogate", ("token",), device, runs)


def check_sequence_clipped_surrogate(rep: Report, devices: list[str], args) -> None:
    op = torch.ops.llmrl.sequence_clipped_surrogate
    cases = []
    ci = 0
    B, T = 16, 67
    seq_opts = (("eps=0.2", dict(eps_low=0.2, eps_high=0.2)),
                ("GSPO eps 3e-4/4e-4", dict(eps_low=3e-4, eps_high=4e-4)),
                ("clip-higher+dual-clip 3", dict(eps_low=0.2, eps_high=0.28, dual_clip=3.0)),
                ("delta 1.2", dict(eps_low=0.2, eps_high=0.2, delta=1.2)))
    for dt in DTYPES:
        extremes = dt in (torch.float32, torch.float64)
        for oname, opts in seq_opts:
            for level, per_token in (("sequence", False), ("sequence_token", False), ("sequence_token", True)):
                ci += 1
                clean, dirty = surrogate_inputs(B, T, dt, 9000 + 10 * ci, extremes, per_token, False, row_offsets=True)
                desc = f"{level} {B}x{T} {oname} adv={'[B,T]' if per_token else '[B]'} (garbage)"
                cases.append(surrogate_case("sequence_clipped_surrogate", desc, dt, clean, dirty, level, opts, 9500 + ci))
        for level in ("sequence", "sequence_token"):  # on-policy: s_b = 1
            ci += 1
            clean, dirty = surrogate_inputs(B, T, dt, 9000 + 10 * ci, False, False, True)
            cases.append(surrogate_case("sequence_clipped_surrogate", f"{level} {B}x{T} on-policy", dt, clean,
                                        (dirty[0], None, dirty[2]), level, dict(eps_low=3e-4, eps_high=4e-4), 9500 + ci))
    check_cases(rep, devices, "sequence_clipped_surrogate", cases)

    for dev in devices:
        a = torch.zeros(2, 3, device=dev)
        rep.raises(f"sequence_clipped_surrogate {dev} [B,T] advantages at 'sequence' error",
                   lambda: op(a, a, a, a != 0, 0.2, 0.2, None, None, "sequence"), "at level 'sequence'")
        rep.raises(f"sequence_clipped_surrogate {dev} level error",
                   lambda: op(a, a, a[:, 0], a != 0, 0.2, 0.2, None, None, "token"), "'level' must be")


def bench_sequence_clipped_surrogate(device: str, runs: int) -> list[tuple]:
    return bench_surrogate("sequence_clipped_surrogate", ("sequence", "sequence_token"), device, runs)


# ---------------------------------------------------------------------------------------------------
# loss_agg (ALGORITHMS.md §5, native/ops/loss_agg/loss_agg.h)

AGG_MODES = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm", "seq_mean_token_sum")


def loss_agg_reference(L, mask, mode="token_mean", normalizer=None, num_sequences=None, max_length=None):
    """Unfused composition (test/reference/lossAgg.ts): masked entries selected away, fully masked rows out
    of the sequence count S (num_sequences replaces it, normalizer the token count, max_length T)."""
    m = as_bool(mask)
    Lm = torch.where(m, L, torch.zeros_like(L))
    n = m.sum(1).to(L.dtype)
    valid = n > 0
    S = valid.sum().to(L.dtype) if num_sequences is None else num_sequences
    if mode == "token_mean":
        return Lm.sum() / (n.sum() if normalizer is None else normalizer)
    if mode == "seq_mean_token_mean":
        per = Lm.sum(1) / n.clamp(min=1)
        return torch.where(valid, per, torch.zeros_like(per)).sum() / S
    if mode == "seq_mean_token_sum_norm":
        return Lm.sum() / (S * (L.shape[1] if max_length is None else max_length))
    return Lm.sum(1).sum() / S


def check_loss_agg(rep: Report, devices: list[str], args) -> None:
    op = torch.ops.llmrl.loss_agg
    cases = []
    ci = 0
    B, T = 7, 129
    for dt in DTYPES:
        for mode in AGG_MODES:
            for global_counts in (False, True):
                ci += 1
                L = rounded(randn64((B, T), 10000 + ci, 2.0, 0.3), dt)
                mask = seq_mask(B, T, 10100 + ci, empty_row=3)
                dirty = with_garbage(L, ~mask, dt)
                # micro-batching: global counts of a batch three times this one (max_length above T)
                opts = (float(3 * mask.sum()), float(3 * (mask.sum(1) > 0).sum()), 200) if global_counts else (None, None, None)
                w = rounded(randn64((), 10200 + ci), torch.bfloat16)
                x = L.clone().requires_grad_()
                out = loss_agg_reference(x, mask, mode, *opts)
                (out * w).backward()
                acc = acc_of(dt)

                def run(dev, rep, label, dirty=dirty, mask=mask, mode=mode, opts=opts, w=w, dt=dt, acc=acc):
                    xs = dirty.to(dev, dt, copy=True).requires_grad_()
                    got = op(xs, mask.to(dev), mode, *opts)
                    expect_out(rep, f"{label} value", got, acc, dev, True)
                    rep.true(f"{label} 0-d", got.dim() == 0, f"shape {tuple(got.shape)}")
                    (got * w.to(dev, acc)).backward()
                    return {"value": got, "grad": xs.grad}

                desc = f"{B}x{T} {mode}{' normalizer/num_sequences/max_length' if global_counts else ''} (garbage)"
                cases.append(Case(desc, dt, run, {"value": out.detach(), "grad": x.grad}, {"value": TOL[acc]}))
    check_cases(rep, devices, "loss_agg", cases)

    for dev in devices:
        g = torch.Generator().manual_seed(10300)
        L = torch.randn(6, 9, generator=g, dtype=torch.float64)
        mask = seq_mask(6, 9, 10301, empty_row=1)
        for mode in AGG_MODES:
            # micro-batches with the global counts add up to the full batch (value and gradient)
            full = L.to(dev, copy=True).requires_grad_()
            want = op(full, mask.to(dev), mode, None, None, None)
            want.backward()
            N, S = float(mask.sum()), float((mask.sum(1) > 0).sum())
            acc = L.to(dev, copy=True).requires_grad_()
            total = 0
            for s, e in ((0, 1), (1, 4), (4, 6)):
                part = op(acc[s:e], mask[s:e].to(dev), mode, N, S, 9)
                part.backward()
                total = total + part.detach()
            rep.close(f"loss_agg {dev} {mode} micro-batches value", total, want, 1e-12, 1e-12)
            rep.close(f"loss_agg {dev} {mode} micro-batches grad", acc.grad, full.grad, 1e-12, 1e-12)
            # all masked, or a zero normalizer → 0 with zero gradient, never NaN
            for m, norm, what in ((torch.zeros_like(mask), None, "all masked"), (mask, 0.0, "zero denominator")):
                x = L.to(dev, copy=True).requires_grad_()
                out = op(x, m.to(dev), mode, norm, norm, None)
                out.backward()
                rep.close(f"loss_agg {dev} {mode} {what} value", out, torch.tensor(0.0, dtype=torch.float64), 1e-300, 0)
                rep.close(f"loss_agg {dev} {mode} {what} grad", x.grad, torch.zeros_like(L), 1e-300, 0)
        a = torch.zeros(2, 3, device=dev)
        rep.raises(f"loss_agg {dev} mode error", lambda: op(a, a != 0, "mean", None, None, None), "'mode' must be one of")
        if dev != "cpu":
            rep.raises(f"loss_agg {dev} device error", lambda: op(a, (a != 0).cpu(), "token_mean", None, None, None), "must be on")


def bench_loss_agg(device: str, runs: int) -> list[tuple]:
    rows = []
    op = torch.ops.llmrl.loss_agg
    for shape in bench_sizes(device, ((64, 4096), (256, 8192)), ((64, 4096),)):
        for dt in (torch.float32, torch.bfloat16):
            for mode in ("token_mean", "seq_mean_token_mean"):
                g = torch.Generator(device=device).manual_seed(0)
                L = torch.randn(shape, device=device, generator=g).to(dt)
                m = torch.rand(shape, device=device, generator=g) > 0.2
                xf, xu = L.clone().requires_grad_(), L.clone().requires_grad_()

                def fused_fwd():
                    with torch.no_grad():
                        op(L, m, mode, None, None, None)

                def unfused_fwd():
                    with torch.no_grad():
                        loss_agg_reference(half_to_float(L), m, mode)

                def fused_fb():
                    xf.grad = None
                    op(xf, m, mode, None, None, None).backward()

                def unfused_fb():
                    xu.grad = None
                    loss_agg_reference(half_to_float(xu), m, mode).backward()

                desc = f"{mode} {'x'.join(map(str, shape))} {dname(dt)}"
                bench_row(rows, "loss_agg fwd", desc, device, runs, fused_fwd, unfused_fwd)
                bench_row(rows, "loss_agg fwd+bwd", desc, device, runs, fused_fb, unfused_fb)
    return rows


# ---------------------------------------------------------------------------------------------------
# value_loss (ALGORITHMS.md §6, native/ops/value_loss/value_loss.h)


def value_loss_reference(v, v_old, R, mask, clip=0.2, normalizer=None):
    """Unfused composition (test/reference/valueLoss.ts): ½·max((V − R)², (V_old + clamp(V − V_old, ±ε) − R)²),
    masked sum / (normalizer or the valid count); clip_frac = valid mean of 1[clipped term > unclipped]
    (torch.maximum splits the gradient on ties, as the op does). Zero denominators → 0."""
    m = as_bool(mask)
    zero = torch.zeros_like(v)
    v_clip = v_old + (v - v_old).clamp(-clip, clip)
    l1, l2 = (v - R).square(), (v_clip - R).square()
    n = m.sum().to(v.dtype)
    loss = 0.5 * torch.where(m, torch.maximum(l1, l2), zero).sum() / (n if normalizer is None else normalizer)
    clip_frac = ((l2 > l1) & m).sum().to(v.dtype) / n.clamp(min=1)
    return loss, clip_frac


def check_value_loss(rep: Report, devices: list[str], args) -> None:
    op = torch.ops.llmrl.value_loss
    cases = []
    ci = 0
    for dt in DTYPES:
        for shape, float_mask in (((7, 129), False), ((2, 5, 33), True)):
            for clip, normalizer in ((0.2, None), (0.05, 1000.0), (1.0, None)):
                ci += 1
                v = rounded(randn64(shape, 11000 + ci), dt)
                v_old = rounded(v + randn64(shape, 11100 + ci, 0.3), dt)
                R = rounded(randn64(shape, 11200 + ci), dt)
                mask = torch.rand(shape, generator=torch.Generator().manual_seed(11300 + ci)) > 0.3
                dirty = [with_garbage(t, ~mask, dt, j) for j, t in enumerate((v, v_old, R))]
                if float_mask:
                    mask = mask.to(torch.float32)
                w = rounded(randn64((), 11400 + ci), torch.bfloat16)
                x = v.clone().requires_grad_()
                loss, _ = value_loss_reference(x, v_old, R, mask, clip, normalizer)
                (loss * w).backward()
                # clip_frac: inside the clip range the two terms tie mathematically, and which one is larger is
                # decided by the rounding of V_old + (V − V_old): evaluate it in the kernel's accumulation dtype
                acc = acc_of(dt)
                _, clip_frac = value_loss_reference(v.to(acc), v_old.to(acc), R.to(acc), mask, clip, normalizer)

                def run(dev, rep, label, dirty=dirty, mask=mask, clip=clip, normalizer=normalizer, w=w, dt=dt, acc=acc):
                    xs = dirty[0].to(dev, dt, copy=True).requires_grad_()
                    loss, cf = op(xs, dirty[1].to(dev, dt), dirty[2].to(dev, dt), mask.to(dev), clip, normalizer)
                    expect_out(rep, f"{label} loss", loss, acc, dev, True)
                    expect_out(rep, f"{label} clip_frac", cf, acc, dev, False)
                    (loss * w.to(dev, acc)).backward()
                    return {"loss": loss, "clip_frac": cf, "grad": xs.grad}

                desc = f"{'x'.join(map(str, shape))} {'float' if float_mask else 'bool'} mask clip={clip:g} normalizer={normalizer} (garbage)"
                cases.append(Case(desc, dt, run, {"loss": loss.detach(), "clip_frac": clip_frac.double(), "grad": x.grad},
                                  {"loss": TOL[acc], "clip_frac": TOL[acc]}))
    check_cases(rep, devices, "value_loss", cases)

    for dev in devices:
        # ALGORITHMS.md §6 closed forms (test/ops/valueLoss.test.ts): clipped branch, tie, unclipped branch
        v = torch.tensor([1.5, 1.1, 0.5], dtype=torch.float64, device=dev).requires_grad_()
        one = torch.ones(3, dtype=torch.float64, device=dev)
        loss, cf = op(v, one, 2 * one, one != 0, 0.2, None)
        (loss * 3).backward()
        rep.close(f"value_loss {dev} closed form loss", loss, torch.tensor((0.32 + 0.405 + 1.125) / 3, dtype=torch.float64), 1e-12, 0)
        rep.close(f"value_loss {dev} closed form clip_frac", cf, torch.tensor(1 / 3, dtype=torch.float64), 1e-12, 0)
        rep.close(f"value_loss {dev} closed form grad", v.grad, torch.tensor([0.0, -0.9, -1.5], dtype=torch.float64), 1e-12, 0)
        for m, norm, first, what in ((one == 0, None, float("nan"), "all masked"), (one != 0, 0.0, 0.5, "zero normalizer")):
            x = torch.tensor([first, 1.0, 2.0], dtype=torch.float64, device=dev).requires_grad_()
            loss, cf = op(x, one, one, m, 0.2, norm)
            loss.backward()
            rep.close(f"value_loss {dev} {what} loss", loss, torch.tensor(0.0, dtype=torch.float64), 1e-300, 0)
            rep.close(f"value_loss {dev} {what} grad", x.grad, torch.zeros(3, dtype=torch.float64), 1e-300, 0)
        a = torch.zeros(2, 3, device=dev)
        rep.raises(f"value_loss {dev} shape error", lambda: op(a, a.t(), a, a != 0, 0.2, None), "'old_values' must have the shape")
        if dev != "cpu":
            rep.raises(f"value_loss {dev} device error", lambda: op(a, a.cpu(), a, a != 0, 0.2, None), "must be on")


def bench_value_loss(device: str, runs: int) -> list[tuple]:
    rows = []
    op = torch.ops.llmrl.value_loss
    for shape in bench_sizes(device, ((64, 4096), (256, 8192)), ((64, 4096),)):
        for dt in (torch.float32, torch.bfloat16):
            g = torch.Generator(device=device).manual_seed(0)
            v = torch.randn(shape, device=device, generator=g).to(dt)
            v_old = (v.float() + 0.3 * torch.randn(shape, device=device, generator=g)).to(dt)
            R = torch.randn(shape, device=device, generator=g).to(dt)
            m = torch.rand(shape, device=device, generator=g) > 0.2
            xf, xu = v.clone().requires_grad_(), v.clone().requires_grad_()

            def fused_fwd():
                with torch.no_grad():
                    op(v, v_old, R, m, 0.2, None)

            def unfused_fwd():
                with torch.no_grad():
                    value_loss_reference(half_to_float(v), half_to_float(v_old), half_to_float(R), m)

            def fused_fb():
                xf.grad = None
                op(xf, v_old, R, m, 0.2, None)[0].backward()

            def unfused_fb():
                xu.grad = None
                value_loss_reference(half_to_float(xu), half_to_float(v_old), half_to_float(R), m)[0].backward()

            desc = f"clip 0.2 {'x'.join(map(str, shape))} {dname(dt)}"
            bench_row(rows, "value_loss fwd", desc, device, runs, fused_fwd, unfused_fwd)
            bench_row(rows, "value_loss fwd+bwd", desc, device, runs, fused_fb, unfused_fb)
    return rows


# ---------------------------------------------------------------------------------------------------
# preference_loss, bradley_terry_loss (ALGORITHMS.md §7–8, native/ops/{preference_loss,bradley_terry_loss}/*.h)


def preference_loss_reference(c, r, rc, rr, loss_type="sigmoid", beta=0.1, label_smoothing=0.0,
                              chosen_lengths=None, rejected_lengths=None, reference_free=False):
    """Unfused composition (test/reference/preferenceLoss.ts): ρ = logπ − logπ_ref (logπ_ref = 0 when
    reference_free; ρ/|y| for ipo, also in the metrics); (mean loss, mean βρ_c, mean βρ_r, mean 1[ρ_c > ρ_r],
    mean β(ρ_c − ρ_r))."""
    F = torch.nn.functional
    b, e = beta, label_smoothing
    xc = c if reference_free else c - rc
    xr = r if reference_free else r - rr
    if loss_type == "ipo":
        xc, xr = xc / chosen_lengths.to(xc.dtype), xr / rejected_lengths.to(xr.dtype)
        losses = (xc - xr - 1 / (2 * b)).square()
    else:
        z = (xc - xr) * b
        if loss_type == "sigmoid":
            losses = -(1 - e) * F.logsigmoid(z) - e * F.logsigmoid(-z)
        elif loss_type == "hinge":
            losses = (1 - z).relu()
        else:
            losses = (-(1 - e) * F.logsigmoid(z) + e * F.logsigmoid(-z)) / (1 - 2 * e)
    return (losses.mean(), (xc * b).mean(), (xr * b).mean(), (xc > xr).to(xc.dtype).mean(), ((xc - xr) * b).mean())


PREF_METRICS = ("rewards_chosen", "rewards_rejected", "accuracy", "margin")


def check_preference_loss(rep: Report, devices: list[str], args) -> None:
    op = torch.ops.llmrl.preference_loss
    cases = []
    ci = 0
    B = 64
    configs = (("sigmoid", 0.0, False), ("sigmoid", 0.1, False), ("sigmoid", 0.0, True), ("ipo", 0.0, False),
               ("hinge", 0.0, False), ("robust", 0.1, False))
    for dt in DTYPES:
        extremes = dt in (torch.float32, torch.float64)
        for loss_type, eps, ref_free in configs:
            ci += 1
            g = torch.Generator().manual_seed(12000 + ci)
            c = -torch.rand(B, generator=g, dtype=torch.float64) * 180 - 20  # sequence log-probs
            r = -torch.rand(B, generator=g, dtype=torch.float64) * 180 - 20
            rc = c + 7 * torch.randn(B, generator=g, dtype=torch.float64)
            rr = r + 7 * torch.randn(B, generator=g, dtype=torch.float64)
            if ref_free:
                c, r = c / 20, r / 20  # z = β(logπ_c − logπ_r) in a range where the loss is not saturated
            if extremes:  # z = 1e4 and −3e3: logσ without overflow (not ±1e4: the mean metrics would cancel)
                rc[0], rr[0], rc[1] = c[0] - 1e5, r[0], c[1] + 3e4
            c, r, rc, rr = (rounded(t, dt) for t in (c, r, rc, rr))
            cl = torch.randint(5, 300, (B,), generator=g) if loss_type == "ipo" else None
            rl = torch.randint(5, 300, (B,), generator=g) if loss_type == "ipo" else None
            beta = 0.1 if loss_type != "hinge" else 0.05
            w = rounded(randn64((), 12100 + ci), torch.bfloat16)
            xc, xr = c.clone().requires_grad_(), r.clone().requires_grad_()
            want = preference_loss_reference(xc, xr, rc, rr, loss_type, beta, eps, cl, rl, ref_free)
            (want[0] * w).backward()
            acc = acc_of(dt)
            opt = lambda t, dev: None if t is None else t.to(dev)  # noqa: E731

            def run(dev, rep, label, c=c, r=r, rc=rc, rr=rr, cl=cl, rl=rl, loss_type=loss_type, beta=beta, eps=eps,
                    ref_free=ref_free, w=w, dt=dt, acc=acc):
                cs, rs = c.to(dev, dt, copy=True).requires_grad_(), r.to(dev, dt, copy=True).requires_grad_()
                refs = (None, None) if ref_free else (rc.to(dev, dt), rr.to(dev, dt))
                out = op(cs, rs, *refs, loss_type, beta, eps, opt(cl, dev), opt(rl, dev), ref_free)
                expect_out(rep, f"{label} loss", out[0], acc, dev, True)
                for k, t in zip(PREF_METRICS, out[1:]):
                    expect_out(rep, f"{label} {k}", t, acc, dev, False)
                (out[0] * w.to(dev, acc)).backward()
                return {"loss": out[0], "grad chosen": cs.grad, "grad rejected": rs.grad, **dict(zip(PREF_METRICS, out[1:]))}

            desc = f"B={B} {loss_type} beta={beta:g} eps={eps:g}{' reference_free' if ref_free else ''}"
            cases.append(Case(desc, dt, run, {"loss": want[0].detach(), "grad chosen": xc.grad, "grad rejected": xr.grad,
                                              **{k: t.detach() for k, t in zip(PREF_METRICS, want[1:])}},
                              {k: TOL[acc] for k in ("loss",) + PREF_METRICS}))
    check_cases(rep, devices, "preference_loss", cases)

    for dev in devices:
        x = torch.randn(8, device=dev) - 50
        out = op(x, x - 3, x, x - 3, "sigmoid", 0.1, 0.0, None, None, False)  # policy == reference → ln 2
        rep.close(f"preference_loss {dev} policy == reference", out[0], torch.tensor(0.6931471805599453), 1e-6, 1e-6)
        e = torch.zeros(0, device=dev)
        out = op(e, e, e, e, "sigmoid", 0.1, 0.0, None, None, False)
        rep.true(f"preference_loss {dev} B=0", all(float(t) == 0 for t in out), f"outputs {[float(t) for t in out]}")
        rep.raises(f"preference_loss {dev} ipo lengths error", lambda: op(x, x, x, x, "ipo", 0.1, 0.0, None, None, False),
                   "'ipo' averages the log-ratios per token")
        rep.raises(f"preference_loss {dev} loss_type error", lambda: op(x, x, x, x, "kto", 0.1, 0.0, None, None, False),
                   "'loss_type' must be one of")


def bench_preference_loss(device: str, runs: int) -> list[tuple]:
    rows = []
    op = torch.ops.llmrl.preference_loss
    for B in (64, 65536):
        g = torch.Generator(device=device).manual_seed(0)
        c, r = -torch.rand(B, device=device, generator=g) * 200, -torch.rand(B, device=device, generator=g) * 200
        rc, rr = c + torch.randn(B, device=device, generator=g), r + torch.randn(B, device=device, generator=g)
        lens = torch.randint(5, 300, (B,), device=device, generator=g)
        for loss_type in ("sigmoid", "ipo"):
            L = (lens, lens) if loss_type == "ipo" else (None, None)
            cf, rf, cu, ru = (t.clone().requires_grad_() for t in (c, r, c, r))

            def fused_fb():
                cf.grad = rf.grad = None
                op(cf, rf, rc, rr, loss_type, 0.1, 0.0, *L, False)[0].backward()

            def unfused_fb():
                cu.grad = ru.grad = None
                preference_loss_reference(cu, ru, rc, rr, loss_type, 0.1, 0.0, *L)[0].backward()

            desc = f"{loss_type} B={B} float32 (loss + 4 metrics)"
            bench_row(rows, "preference_loss fwd", desc, device, runs,
                      lambda: op(c, r, rc, rr, loss_type, 0.1, 0.0, *L, False),
                      lambda: preference_loss_reference(c, r, rc, rr, loss_type, 0.1, 0.0, *L))
            bench_row(rows, "preference_loss fwd+bwd", desc, device, runs, fused_fb, unfused_fb)
    return rows


def bradley_terry_loss_reference(c, r, margin=None, center_coef=0.0):
    """Unfused composition (test/reference/bradleyTerryLoss.ts): −mean logσ(r_c − r_r − m)
    + center_coef·mean((r_c + r_r)²); accuracy mean 1[r_c > r_r]; mean margin mean(r_c − r_r)."""
    d = c - r
    if margin is not None:
        d = d - margin
    loss = -torch.nn.functional.logsigmoid(d).mean()
    if center_coef:
        loss = loss + center_coef * (c + r).square().mean()
    return loss, (c > r).to(c.dtype).mean(), (c - r).mean()


def check_bradley_terry_loss(rep: Report, devices: list[str], args) -> None:
    op = torch.ops.llmrl.bradley_terry_loss
    cases = []
    ci = 0
    B = 64
    for dt in DTYPES:
        extremes = dt in (torch.float32, torch.float64)
        for with_margin in (False, True):
            for center in (0.0, 0.01):
                ci += 1
                c, r = rounded(randn64(B, 13000 + ci, 2.0), dt), rounded(randn64(B, 13100 + ci, 2.0), dt)
                if extremes:  # score gaps of ±1e4: logσ without overflow
                    c[0], r[0], c[1], r[1] = 5e3, -5e3, -5e3, 5e3
                margin = rounded(randn64(B, 13200 + ci).abs(), torch.float32) if with_margin else None
                w = rounded(randn64((), 13300 + ci), torch.bfloat16)
                xc, xr = c.clone().requires_grad_(), r.clone().requires_grad_()
                want = bradley_terry_loss_reference(xc, xr, margin, center)
                (want[0] * w).backward()
                acc = acc_of(dt)

                def run(dev, rep, label, c=c, r=r, margin=margin, center=center, w=w, dt=dt, acc=acc):
                    cs, rs = c.to(dev, dt, copy=True).requires_grad_(), r.to(dev, dt, copy=True).requires_grad_()
                    out = op(cs, rs, None if margin is None else margin.to(dev, torch.float32), center)
                    expect_out(rep, f"{label} loss", out[0], acc, dev, True)
                    expect_out(rep, f"{label} accuracy", out[1], acc, dev, False)
                    expect_out(rep, f"{label} mean_margin", out[2], acc, dev, False)
                    (out[0] * w.to(dev, acc)).backward()
                    return {"loss": out[0], "accuracy": out[1], "mean_margin": out[2], "grad chosen": cs.grad,
                            "grad rejected": rs.grad}

                desc = f"B={B} margin={int(with_margin)} center_coef={center:g}"
                cases.append(Case(desc, dt, run, {"loss": want[0].detach(), "accuracy": want[1], "mean_margin": want[2],
                                                  "grad chosen": xc.grad, "grad rejected": xr.grad},
                                  {k: TOL[acc] for k in ("loss", "accuracy", "mean_margin")}))
    check_cases(rep, devices, "bradley_terry_loss", cases)

    for dev in devices:
        e = torch.zeros(0, device=dev)
        out = op(e, e, None, 0.0)
        rep.true(f"bradley_terry_loss {dev} B=0", all(float(t) == 0 for t in out), f"outputs {[float(t) for t in out]}")
        x = torch.zeros(3, device=dev)
        rep.raises(f"bradley_terry_loss {dev} center_coef error", lambda: op(x, x, None, -1.0), "'center_coef'")
        rep.raises(f"bradley_terry_loss {dev} shape error", lambda: op(x, torch.zeros(4, device=dev), None, 0.0),
                   "'rejected_scores' must have the shape")


def bench_bradley_terry_loss(device: str, runs: int) -> list[tuple]:
    rows = []
    op = torch.ops.llmrl.bradley_terry_loss
    for B in (64, 65536):
        g = torch.Generator(device=device).manual_seed(0)
        c, r = torch.randn(B, device=device, generator=g), torch.randn(B, device=device, generator=g)
        m = torch.rand(B, device=device, generator=g)
        cf, rf, cu, ru = (t.clone().requires_grad_() for t in (c, r, c, r))

        def fused_fb():
            cf.grad = rf.grad = None
            op(cf, rf, m, 0.01)[0].backward()

        def unfused_fb():
            cu.grad = ru.grad = None
            bradley_terry_loss_reference(cu, ru, m, 0.01)[0].backward()

        desc = f"margin center 0.01 B={B} float32"
        bench_row(rows, "bradley_terry_loss fwd", desc, device, runs, lambda: op(c, r, m, 0.01),
                  lambda: bradley_terry_loss_reference(c, r, m, 0.01))
        bench_row(rows, "bradley_terry_loss fwd+bwd", desc, device, runs, fused_fb, unfused_fb)
    return rows


# One entry per op folder. check(rep, devices, args) records results;
# bench(device, runs) returns (op, case, fused ms, unfused ms) rows.
OP_CHECKS = {
    "token_logprobs": {"check": check_token_logprobs, "bench": bench_token_logprobs},
    "linear_token_logprobs": {"check": check_linear_token_logprobs, "bench": bench_linear_token_logprobs},
    "kl_penalty": {"check": check_kl_penalty, "bench": bench_kl_penalty},
    "gae": {"check": check_gae, "bench": bench_gae},
    "masked_whiten": {"check": check_masked_whiten, "bench": bench_masked_whiten},
    "group_advantages": {"check": check_group_advantages, "bench": bench_group_advantages},
    "clipped_surrogate": {"check": check_clipped_surrogate, "bench": bench_clipped_surrogate},
    "sequence_clipped_surrogate": {"check": check_sequence_clipped_surrogate, "bench": bench_sequence_clipped_surrogate},
    "loss_agg": {"check": check_loss_agg, "bench": bench_loss_agg},
    "value_loss": {"check": check_value_loss, "bench": bench_value_loss},
    "preference_loss": {"check": check_preference_loss, "bench": bench_preference_loss},
    "bradley_terry_loss": {"check": check_bradley_terry_loss, "bench": bench_bradley_terry_loss},
}


# ---------------------------------------------------------------------------------------------------
# Build


def op_folders(selected: list[str] | None) -> list[str]:
    ops = sorted(d for d in os.listdir(OPS_DIR) if os.path.isdir(os.path.join(OPS_DIR, d)))
    if selected:
        unknown = [s for s in selected if s not in ops]
        if unknown:
            raise SystemExit(f"gpu_check: unknown op folder(s) {unknown}; native/ops has {ops}")
        ops = [o for o in ops if o in selected]
    return ops


def wrapper_sources(ops: list[str], with_cuda: bool, build_dir: str) -> list[str]:
    """One file per source, named <op>__<file>, that #includes the real one: cpp_extension names objects
    by basename, so the many cpu.cpp would collide. Rewritten only when changed (keeps ninja's cache)."""
    src_dir = os.path.join(build_dir, "src")
    os.makedirs(src_dir, exist_ok=True)
    real = [os.path.join(OPS_DIR, "registry.cpp")]
    for op in ops:
        for f in ("cpu.cpp", "autograd.cpp") + (("cuda.cu",) if with_cuda else ()):
            p = os.path.join(OPS_DIR, op, f)
            if os.path.exists(p):
                real.append(p)
    out = []
    for p in real:
        rel = os.path.relpath(p, OPS_DIR)
        w = os.path.join(src_dir, rel.replace(os.sep, "__"))
        text = f'// generated by scripts/gpu_check.py\n#include "{p}"\n'
        if not os.path.exists(w) or open(w).read() != text:
            with open(w, "w") as fh:
                fh.write(text)
        out.append(w)
    return out


def math_header_shim(build_dir: str) -> list[str]:
    """Include folder for the cuBLAS/cuSPARSE/cuSOLVER headers that ATen/cuda/CUDAContext.h includes, where
    the CUDA toolkit lacks them but this Python has them from the NVIDIA wheels torch depends on: links to
    only the headers the toolkit lacks, so none of the toolkit's own is shadowed."""
    home_inc = os.path.join(cpp_ext.CUDA_HOME or "", "include")
    if os.path.exists(os.path.join(home_inc, "cusparse.h")) and os.path.exists(os.path.join(home_inc, "cublas_v2.h")):
        return []
    shim = os.path.join(build_dir, "cuda-math-include")
    shutil.rmtree(shim, ignore_errors=True)
    os.makedirs(shim)
    for base in site_dirs():
        for inc in sorted(glob.glob(os.path.join(base, "nvidia", "*", "include"))):
            for name in os.listdir(inc):
                if not os.path.exists(os.path.join(home_inc, name)) and not os.path.lexists(os.path.join(shim, name)):
                    os.symlink(os.path.join(inc, name), os.path.join(shim, name))
    return [shim] if os.listdir(shim) else []


def cudart_shim(build_dir: str) -> list[str]:
    """-L flags so `-lcudart` links where the CUDA lib folder has only libcudart.so.N (pip's layout)."""
    home = cpp_ext.CUDA_HOME
    if not home:
        return []
    libs = [os.path.join(home, d) for d in ("lib64", "lib")]
    if any(os.path.exists(os.path.join(d, "libcudart.so")) for d in libs):
        return []
    for d in libs:
        found = sorted(glob.glob(os.path.join(d, "libcudart.so.*")))
        if found:
            shim = os.path.join(build_dir, "cudart")
            os.makedirs(shim, exist_ok=True)
            link = os.path.join(shim, "libcudart.so")
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(found[0], link)
            return [f"-L{shim}"]
    return []


CXX_FLAGS = ["-O3", "-std=c++20", "-Wno-unused-parameter"]
CUDA_FLAGS = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-DLLMRL_WITH_CUDA=1"]


def build_with_load(sources: list[str], with_cuda: bool, build_dir: str, verbose: bool) -> str:
    return cpp_ext.load(  # is_python_module=False: loads it with torch.ops.load_library, returns its path
        name="llmrl_ops", sources=sources, extra_cflags=CXX_FLAGS + (["-DLLMRL_WITH_CUDA=1"] if with_cuda else []),
        extra_cuda_cflags=CUDA_FLAGS, extra_include_paths=[OPS_DIR] + (math_header_shim(build_dir) if with_cuda else []), extra_ldflags=cudart_shim(build_dir) if with_cuda else [],
        build_directory=build_dir, with_cuda=with_cuda, is_python_module=False, verbose=verbose)


def build_direct(sources: list[str], with_cuda: bool, build_dir: str, verbose: bool) -> str:
    """The same build without ninja: compile in parallel, link, load (no incremental rebuilds)."""
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    incs = [f"-I{p}" for p in [OPS_DIR] + (math_header_shim(build_dir) if with_cuda else [])]
    for p in cpp_ext.include_paths("cuda" if with_cuda else "cpu"):
        incs += ["-isystem", p]  # two arguments: nvcc rejects -isystemDIR
    cxx = os.environ.get("CXX", "c++")
    jobs = int(os.environ.get("MAX_JOBS", os.cpu_count() or 2))

    def cmd(src):
        obj = os.path.join(build_dir, os.path.basename(src) + ".o")
        if src.endswith(".cu"):
            nvcc = os.path.join(cpp_ext.CUDA_HOME, "bin", "nvcc")
            return obj, [nvcc, *incs, abi, *cpp_ext.COMMON_NVCC_FLAGS, *cpp_ext._get_cuda_arch_flags(), *CUDA_FLAGS,
                         "--compiler-options", "-fPIC", "-c", src, "-o", obj]
        return obj, [cxx, *incs, abi, "-fPIC", *CXX_FLAGS, *(["-DLLMRL_WITH_CUDA=1"] if with_cuda else []), "-c", src, "-o", obj]

    cmds = [cmd(s) for s in sources]

    def run(c):
        if verbose:
            print("  $ " + " ".join(c[1]))
        r = subprocess.run(c[1], capture_output=True, text=True)
        return c[0], r

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for obj, r in pool.map(run, cmds):
            if r.returncode != 0:
                raise RuntimeError(f"compiling {obj} failed:\n{r.stdout}{r.stderr}")
    lib = os.path.join(build_dir, "llmrl_ops.so")
    tlib = os.path.join(os.path.dirname(torch.__file__), "lib")
    link = [cxx, "-shared", *[o for o, _ in cmds], f"-L{tlib}", "-Wl,--no-as-needed", "-lc10", "-ltorch_cpu", "-ltorch"]
    if with_cuda:
        home = cpp_ext.CUDA_HOME
        libdir = next((os.path.join(home, d) for d in ("lib64", "lib") if os.path.isdir(os.path.join(home, d))), None)
        link += ["-lc10_cuda", "-ltorch_cuda", *cudart_shim(build_dir), *([f"-L{libdir}"] if libdir else []), "-lcudart"]
    link += [f"-Wl,-rpath,{tlib}", "-o", lib]
    if verbose:
        print("  $ " + " ".join(link))
    r = subprocess.run(link, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"linking failed:\n{r.stdout}{r.stderr}")
    torch.ops.load_library(lib)
    return lib


# ---------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", help="comma-separated op folders to build and check (default: all)")
    ap.add_argument("--no-bench", action="store_true")
    ap.add_argument("--bench-cpu", action="store_true", help="also time the CPU kernels (smaller shapes)")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "gpu-check"))
    ap.add_argument("--no-ninja", action="store_true", help="build with c++/nvcc directly, not cpp_extension.load")
    ap.add_argument("--build-cuda", action="store_true",
                    help="with a CUDA torch but no GPU: still build and load the CUDA kernels (not run)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    rep = Report(verbose=args.verbose)

    cuda_torch = torch.version.cuda is not None
    gpus = torch.cuda.device_count() if cuda_torch else 0
    print(f"gpu_check: torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}), python {sys.version.split()[0]}, "
          f"{gpus} GPU(s){': ' + torch.cuda.get_device_name(0) if gpus else ''}")
    run_cuda = gpus > 0
    with_cuda = run_cuda or (args.build_cuda and cuda_torch)  # compile the CUDA kernels
    if not run_cuda:
        why = "this torch is a CPU build" if not cuda_torch else "no GPU is visible"
        what = "the CUDA build and " if not with_cuda else ""
        print(f"gpu_check: {why}: SKIPPING {what}every CUDA check (CPU against the references only)")
        if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"  # no GPU to read the arch from
    if with_cuda and not cpp_ext.CUDA_HOME:
        print("gpu_check: a GPU is visible but no CUDA toolkit (nvcc) was found: set CUDA_HOME, put nvcc on PATH, "
              f"or `pip install nvidia-cuda-nvcc` matching CUDA {torch.version.cuda}")
        return 2

    ops = op_folders(args.ops.split(",") if args.ops else None)
    os.makedirs(args.build_dir, exist_ok=True)
    sources = wrapper_sources(ops, with_cuda, args.build_dir)
    use_ninja = cpp_ext.is_ninja_available() and not args.no_ninja
    print(f"gpu_check: building {len(sources)} source(s) of {len(ops)} op(s) into {os.path.relpath(args.build_dir, ROOT)} "
          f"({'torch.utils.cpp_extension.load' if use_ninja else 'c++/nvcc directly: no ninja'}"
          f"{', CUDA arch ' + ' '.join(cpp_ext._get_cuda_arch_flags()) if with_cuda else ''})")
    t0 = time.perf_counter()
    try:
        lib = (build_with_load if use_ninja else build_direct)(sources, with_cuda, args.build_dir, args.verbose)
    except Exception as e:  # noqa: BLE001
        print(f"gpu_check: BUILD FAILED: {e}")
        if args.verbose:
            traceback.print_exc()
        return 2
    print(f"gpu_check: built and loaded {os.path.relpath(lib, ROOT)} in {time.perf_counter() - t0:.1f} s")

    # every built op: schema registered, kernels for the built backends
    print("== registrations")
    all_ops = set(torch._C._dispatch_get_all_op_names())
    for op in ops:
        name = f"llmrl::{op}"
        try:
            torch._C._dispatch_find_schema_or_throw(name, "")
        except RuntimeError:
            print(f"  note    {op}: no schema named {name} (folder without an op of its name)")
            continue
        # the op is served on the backend (its own kernel, or a composite one over internal ops), and its
        # internal <op>_forward / <op>_backward ops, if any, have that backend's kernel
        internal = [n for n in all_ops if n in (f"{name}_forward", f"{name}_backward")]
        for key, src in (("CPU", "cpu.cpp"), ("CUDA", "cuda.cu")):
            if not os.path.exists(os.path.join(OPS_DIR, op, src)) or (key == "CUDA" and not with_cuda):
                continue
            missing = [n for n in [name] if not torch._C._dispatch_has_computed_kernel_for_dispatch_key(n, key)]
            missing += [n for n in internal if not torch._C._dispatch_has_kernel_for_dispatch_key(n, key)]
            rep.true(f"{op} {key} kernels", not missing, f"no {key} kernel for {', '.join(missing)}")
    print(f"  {rep.passed} ok, {rep.failed} failed")

    devices_all = ["cpu"] + ([f"cuda:{i}" for i in range(min(gpus, 2))] if run_cuda else [])
    bench_rows = []
    for op in ops:
        entry = OP_CHECKS.get(op)
        if entry is None:
            print(f"== {op}: no entry in OP_CHECKS yet (registration checked only)")
            continue
        has_cuda_src = os.path.exists(os.path.join(OPS_DIR, op, "cuda.cu"))
        devices = [d for d in devices_all if d == "cpu" or has_cuda_src]
        print(f"== {op} on {', '.join(devices)}{'' if has_cuda_src or not run_cuda else ' (no cuda.cu: CPU only)'}")
        before = (rep.passed, rep.failed)
        try:
            entry["check"](rep, devices, args)
        except Exception as e:  # noqa: BLE001
            rep.fail(f"{op} checks", f"raised {type(e).__name__}: {e}")
            traceback.print_exc()
        print(f"  {rep.passed - before[0]} ok, {rep.failed - before[1]} failed")
        if not args.no_bench and entry.get("bench"):
            bench_devices = [d for d in devices if d.startswith("cuda")][:1] + (["cpu"] if args.bench_cpu or not run_cuda else [])
            for dev in bench_devices:
                try:
                    bench_rows += [(dev, *row) for row in entry["bench"](dev, args.runs if dev != "cpu" else min(args.runs, 10))]
                except Exception as e:  # noqa: BLE001
                    rep.fail(f"{op} bench on {dev}", f"raised {type(e).__name__}: {e}")

    if bench_rows:
        print(f"== timings: median of {args.runs} synchronized runs (CPU: at most 10), ms")
        head = ("device", "op", "case", "fused", "unfused", "speed-up")
        rows = [(d, o, c, f"{f:.4f}", f"{u:.4f}", f"{u / f:.2f}x" if f > 0 else "-") for d, o, c, f, u in bench_rows]
        widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
        for r in [head] + rows:
            print("  " + "  ".join(str(v).ljust(w) if i < 3 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths))))

    print(f"gpu_check: {rep.passed} passed, {rep.failed} failed"
          f"{'' if run_cuda else ' (CUDA checks skipped: no GPU/CUDA torch)'}")
    for f in rep.failures[:20]:
        print(f"  - {f}")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())

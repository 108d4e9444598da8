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
  4. times the fused CUDA op against the unfused composition (median of N synchronized runs).
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


# One entry per op folder; later ops slot in here. check(rep, devices, args) records results;
# bench(device, runs) returns (op, case, fused ms, unfused ms) rows.
OP_CHECKS = {
    "kl_penalty": {"check": check_kl_penalty, "bench": bench_kl_penalty},
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
    ap.add_argument("--bench-cpu", action="store_true", help="also time the CPU kernels")
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

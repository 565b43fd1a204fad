#!/usr/bin/env python
"""The fused CPU kernel in isolation: candidate builds timed against torch's fused Adam and the memory floor.

    .venv/bin/python benchmarks/kernel_lab.py --threads 1            # every candidate, every case
    .venv/bin/python benchmarks/kernel_lab.py --threads 2 --cases resnet50-cifar --candidates package "package, no prefetch"
    .venv/bin/python benchmarks/kernel_lab.py --aten                 # also the ATen C++ extension (builds with ninja)

No optimizer object and no Python around the calls: each repeat times one call of each candidate kernel on the
same tensors (one flat buffer, the CIFAR ResNet50 shapes, 2000 tensors of 1000 elements), `torch._fused_adam_` (the
operator under `Adam(fused=True)`) on its own state, and the floor `a.add_(b)` (9 floats per element, see
step_speed.py), in an order rotated every repeat; medians and minima. Before timing, every candidate is checked
against a float64 step (relative error of p, m, v, prev after 3 steps, DFC friction).

Candidates: `package` is the kernel diffgrad_nb.fused builds (its C source and first flag set); the others are the
same source built with other flags (no prefetching, glibc's vector expf instead of the inlined one, -ffast-math,
the two fallback flag sets) and the kernel of an earlier commit (`--baseline`, read with `git show`: the version
before issue 12 by default). `--aten` adds the same loop written as a torch C++ extension. `--asm` prints, per
candidate, how many operands name xmm/ymm/zmm registers and which libmvec exp variants it calls (objdump), to see
what the compiler vectorised.

Measured on the 2-core Intel Xeon of this project (issue 12), while other jobs loaded it: see nbs/01a_fused.ipynb.
"""
import argparse, ctypes, math, os, re, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).parent))
from step_speed import CASES, machine                                  # noqa: E402

def previous_source(commit):
    "The kernel's C source at an earlier commit of this repository (the baseline), or None outside a git checkout."
    res = subprocess.run(['git', 'show', f'{commit}:diffgrad_nb/fused.py'], capture_output=True, text=True,
                         cwd=Path(__file__).parent)
    if res.returncode: return None
    ns = {}
    exec(re.search(r'^_C_SOURCE = r""".*?"""', res.stdout, re.S | re.M).group(0), ns)
    return ns['_C_SOURCE']

def candidates(baseline=None):
    "name -> (C source, cflags, libs): the package's kernel, variants of it by compiler flag, and an earlier version."
    from diffgrad_nb import fused as F
    (fast, mvec), (native, lm), (portable, _) = F._FLAG_SETS
    out = {
        'package': (F._C_SOURCE, fast, mvec),
        'package, no prefetch': (F._C_SOURCE, fast + ['-DDG_AHEAD=0'], mvec),
        'package, libmvec expf': (F._C_SOURCE, fast + ['-DDG_LIBMVEC_EXPF'], mvec),
        'package, libmvec expf, no prefetch': (F._C_SOURCE, fast + ['-DDG_LIBMVEC_EXPF', '-DDG_AHEAD=0'], mvec),
        'package, -ffast-math': (F._C_SOURCE, fast + ['-ffast-math'], mvec),
        'package, 2nd flag set (no libmvec)': (F._C_SOURCE, native, lm),
        'package, 3rd flag set (no -march=native)': (F._C_SOURCE, portable, lm),
    }
    src = previous_source(baseline) if baseline else None
    if src: out[f'{baseline[:7]} (before issue 12)'] = (src, fast, mvec)
    return out

def build(name, src, cflags, libs, outdir):
    "Compile one candidate; returns (ctypes library, seconds)."
    c, so = Path(outdir)/f'{name}.c', Path(outdir)/f'{name}.so'
    c.write_text(src)
    cc = os.environ.get('CC') or shutil.which('cc') or 'gcc'
    t0 = time.perf_counter()
    res = subprocess.run([cc, *cflags, '-fPIC', '-shared', str(c), '-o', str(so), *libs], capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if res.returncode: raise RuntimeError(f'{name}: {res.stderr[-800:]}')
    lib = ctypes.CDLL(str(so))
    for fn in ('diffgrad_step_f32', 'diffgrad_step_f64'):
        f = getattr(lib, fn)
        f.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        f.restype = ctypes.c_int
    return lib, secs, so

def asm_summary(so):
    "Vector register widths in the library's code and the libmvec exp variants it calls."
    dis = subprocess.run(['objdump', '-d', '--no-show-raw-insn', str(so)], capture_output=True, text=True).stdout
    regs = {w: len(re.findall(rf'%{w}mm\d', dis)) for w in 'xyz'}
    calls = sorted(set(re.findall(r'<(_ZGV\w+)@plt>', dis)))
    return f"xmm {regs['x']}, ymm {regs['y']}, zmm {regs['z']} operand uses; vector exp: {', '.join(calls) or 'none'}"

ATEN_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/cpu/vec/functional.h>
#include <cmath>
using Vec = at::vec::Vectorized<float>;

// DFC, no weight decay, no AMSGrad: the case the lab times, in the package kernel's one-division form.
void step(std::vector<at::Tensor> P, std::vector<at::Tensor> G, std::vector<at::Tensor> M, std::vector<at::Tensor> V,
          std::vector<at::Tensor> D, std::vector<at::Tensor> S, double lr, double beta1, double beta2, double eps) {
  int64_t nt = P.size(), total = 0;
  std::vector<int64_t> off(nt + 1, 0);
  std::vector<float> ss(nt), et(nt);
  for (int64_t t = 0; t < nt; t++) {
    float* s = S[t].data_ptr<float>(); *s += 1.0f;
    double sbc2 = std::sqrt(1 - std::pow(beta2, (double)*s));
    ss[t] = -lr * sbc2 / (1 - std::pow(beta1, (double)*s)); et[t] = eps * sbc2;
    off[t + 1] = off[t] + P[t].numel();
  }
  total = off[nt];
  const float b1 = beta1, b2 = beta2, omb1 = 1 - beta1, omb2 = 1 - beta2;
  at::parallel_for(0, total, 65536, [&](int64_t lo, int64_t hi) {
    int64_t t = std::upper_bound(off.begin(), off.end(), lo) - off.begin() - 1;
    for (; t < nt && off[t] < hi; t++) {
      int64_t a = std::max(lo - off[t], (int64_t)0), b = std::min(hi - off[t], P[t].numel());
      float *p = P[t].data_ptr<float>(), *m = M[t].data_ptr<float>(), *v = V[t].data_ptr<float>(), *d = D[t].data_ptr<float>();
      const float* g = G[t].data_ptr<float>();
      const Vec vb1(b1), vb2(b2), vomb1(omb1), vomb2(omb2), vss(ss[t]), vet(et[t]), one(1.0f);
      int64_t i = a;
      for (; i + Vec::size() <= b; i += Vec::size()) {
        Vec gi = Vec::loadu(g + i), pi = Vec::loadu(p + i);
        Vec mi = vb1 * Vec::loadu(m + i) + vomb1 * gi;
        Vec vi = vb2 * Vec::loadu(v + i) + vomb2 * gi * gi;
        mi.store(m + i); vi.store(v + i);
        Vec dg = Vec::loadu(d + i) - gi;
        Vec q = one + (dg.abs().neg()).exp();
        gi.store(d + i);
        (pi + vss * mi / (q * (vi.sqrt() + vet))).store(p + i);
      }
      for (; i < b; i++) {
        float gi = g[i], mi = b1 * m[i] + omb1 * gi, vi = b2 * v[i] + omb2 * gi * gi;
        m[i] = mi; v[i] = vi;
        float q = 1 + std::exp(-std::fabs(d[i] - gi));
        d[i] = gi;
        p[i] = p[i] + ss[t] * mi / (q * (std::sqrt(vi) + et[t]));
      }
    }
  });
}
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("step", &step); }
"""

def build_aten(outdir, isa_flags):
    "The ATen variant through torch.utils.cpp_extension.load_inline; returns (module, seconds)."
    from torch.utils.cpp_extension import load_inline
    t0 = time.perf_counter()
    mod = load_inline('dg_lab_aten', cpp_sources=ATEN_SOURCE, extra_cflags=['-O3', *isa_flags],
                      build_directory=str(outdir), verbose=False)
    return mod, time.perf_counter() - t0

class State:
    "p, g, m, v, prev and step for a list of shapes, with the pointer table the C kernel takes."
    def __init__(self, shapes, gen, dtype=torch.float32):
        self.P = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
        self.G = [torch.randn(s, generator=gen, dtype=dtype) * 1e-2 for s in shapes]
        self.M, self.V, self.D = ([torch.zeros(s, dtype=dtype) for s in shapes] for _ in range(3))
        self.S = [torch.zeros((), dtype=torch.float32) for _ in shapes]
        n = len(shapes)
        self.ptrs = torch.tensor([t.data_ptr() for L in (self.P, self.G, self.M, self.V, self.D) for t in L]
                                 + [0] * n + [s.data_ptr() for s in self.S], dtype=torch.int64)
        self.numel = torch.tensor([math.prod(s) for s in shapes], dtype=torch.int64)
        self.fric = torch.tensor([1.0, 0.0], dtype=torch.float64).repeat(n, 1)
        self.hyper = torch.tensor([1e-3, 0.9, 0.999, 1e-8, 0.0, 1.0, 0.0], dtype=torch.float64)

    def c_call(self, lib):
        f, n = lib.diffgrad_step_f32 if self.P[0].dtype == torch.float32 else lib.diffgrad_step_f64, len(self.P)
        args = (n, self.ptrs.data_ptr(), self.numel.data_ptr(), self.fric.data_ptr(), self.hyper.data_ptr(), 1 << 4)
        return lambda: f(*args, torch.get_num_threads())

def reference(P, G, steps=3, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    "diffGrad (DFC) in float64, Eqs. 11-20 as written, for `steps` steps with the same gradients."
    P, G = [p.double().clone() for p in P], [g.double() for g in G]
    M, V, D = ([torch.zeros_like(p) for p in P] for _ in range(3))
    for t in range(1, steps + 1):
        for p, g, m, v, d in zip(P, G, M, V, D):
            m.mul_(b1).add_((1 - b1) * g); v.mul_(b2).add_((1 - b2) * g * g)
            xi = torch.sigmoid((d - g).abs())
            p.sub_(lr / (1 - b1 ** t) * xi * m / ((v / (1 - b2 ** t)).sqrt() + eps))
            d.copy_(g)
    return P, M, V, D

def check(call_for, shapes=((7,), (70001,), (3, 5), (40000, 2)), steps=3):
    "Worst relative error against the float64 reference after `steps` steps (changing gradients not needed here)."
    gen = torch.Generator().manual_seed(1)
    st = State(shapes, gen)
    P0 = [p.clone() for p in st.P]
    call = call_for(st)
    for _ in range(steps): call()
    ref = reference(P0, st.G, steps)
    worst = 0.0
    for got, want in zip((st.P, st.M, st.V, st.D), ref):
        for a, b in zip(got, want):
            worst = max(worst, ((a.double() - b).abs() / b.abs().clamp_min(1e-30)).max().item())
    return worst

def nonfinite_ok(call_for):
    "After one step with NaN, inf and -inf among the gradients, NaN exactly where the float64 reference has NaN."
    g = torch.tensor([float('nan'), float('inf'), -float('inf'), 1.0, 0.0, -3.0] * 20000)   # 120k: both threads
    st = State([tuple(g.shape)], torch.Generator().manual_seed(2))
    st.G[0].copy_(g)
    P0 = [p.clone() for p in st.P]
    call_for(st)()
    ref = reference(P0, st.G, 1)
    return all(torch.equal(a.isnan(), b.isnan()) for got, want in zip((st.P, st.M, st.V, st.D), ref) for a, b in zip(got, want))

def time_case(name, shapes, calls, args):
    gen = torch.Generator().manual_seed(0)
    states = {k: State(shapes, gen) for k in calls}                      # each candidate walks its own state
    adam = State(shapes, gen)
    n = sum(math.prod(s) for s in shapes)
    a, b = torch.randn(3 * n), torch.randn(3 * n)
    fns = [(k, make(states[k])) for k, make in calls.items()]
    fns.append(('torch._fused_adam_ (7 floats)', lambda: (torch._foreach_add_(adam.S, 1), torch._fused_adam_(
        adam.P, adam.G, adam.M, adam.V, [], adam.S, lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
        amsgrad=False, maximize=False))))
    fns.append(('floor: a.add_(b), 9 floats', lambda: a.add_(b)))
    times = {k: [] for k, _ in fns}
    for _ in range(args.warmup):
        for _, f in fns: f()
    for r in range(args.repeats):
        for k, f in fns[r % len(fns):] + fns[:r % len(fns)]:
            t0 = time.perf_counter(); f(); times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    best = {k: min(v) * 1e3 for k, v in times.items()}
    adam_k, floor_k = fns[-2][0], fns[-1][0]
    print(f"\n### {name}: {len(shapes)} tensor(s), {n / 1e6:.1f} M elements, {torch.get_num_threads()} thread(s), {args.repeats} repeats\n")
    print('| kernel | median (ms) | × fused Adam | × floor | best (ms) | best × fused Adam |')
    print('|---|---:|---:|---:|---:|---:|')
    for k, _ in fns:
        fl = med[floor_k] * (7 / 9 if k == adam_k else 1)
        print(f'| {k} | {med[k]:.2f} | {med[k] / med[adam_k]:.2f} | {med[k] / fl:.2f} | {best[k]:.2f} | {best[k] / best[adam_k]:.2f} |')

def main(argv=None):
    cases = {'flat': [(sum(math.prod(s) for s in CASES['resnet50-cifar']),)], **CASES}
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--repeats', type=int, default=11)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--cases', nargs='+', default=list(cases), choices=list(cases))
    ap.add_argument('--candidates', nargs='+', default=None, help='default: all C candidates')
    ap.add_argument('--baseline', default='e3eaaa6', help='also time the kernel of this commit (git show; skipped outside git)')
    ap.add_argument('--aten', action='store_true', help='also build and time the ATen extension (load_inline, needs ninja)')
    ap.add_argument('--asm', action='store_true', help='print vector register use and vector exp calls per candidate')
    args = ap.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    print(machine())
    cands = candidates(args.baseline)
    names = args.candidates or list(cands)
    calls = {}
    with tempfile.TemporaryDirectory() as tmp:
        print('\n| candidate | build (s) | worst rel. error vs float64 (3 steps) | NaN where float64 has NaN |' + (' code |' if args.asm else ''))
        print('|---|---:|---:|---|' + ('---|' if args.asm else ''))
        for k in names:
            lib, secs, so = build(k, *cands[k], tmp)
            make = (lambda lib: lambda st: st.c_call(lib))(lib)
            calls[k] = make
            print(f'| {k} | {secs:.2f} | {check(make):.1e} | {nonfinite_ok(make)} |' + (f' {asm_summary(so)} |' if args.asm else ''))
        if args.aten:
            mod, secs = build_aten(tmp, ['-march=native', '-DCPU_CAPABILITY_AVX512', '-DCPU_CAPABILITY=AVX512'])
            make = lambda st: (lambda: mod.step(st.P, st.G, st.M, st.V, st.D, st.S, 1e-3, 0.9, 0.999, 1e-8))
            calls['aten (load_inline, AVX512 Vectorized)'] = make
            print(f'| aten (load_inline, AVX512 Vectorized) | {secs:.2f} | {check(make):.1e} | {nonfinite_ok(make)} |')
        for c in args.cases: time_case(c, cases[c], calls, args)

if __name__ == '__main__': main()

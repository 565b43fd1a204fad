#!/usr/bin/env python
"""Step time of DiffGrad's paths against torch.optim.Adam, interleaved in one run, medians, as a markdown table.

    .venv/bin/python benchmarks/step_speed.py --threads 2 --repeats 21          # the table in nbs/01a_fused.ipynb
    .venv/bin/python benchmarks/step_speed.py --quick                           # a smoke run (3 repeats)
    .venv/bin/python benchmarks/step_speed.py --device cuda --cases resnet50-cifar 16M   # on a GPU

On CUDA the fused step is torch.compile'd on its first step (the "first step" column); a list of 2000 tensors
makes a very large graph, hence the shorter case list there.

Cases: the parameter shapes of the CIFAR ResNet50 (161 tensors, 23.5 M elements, generated here without building
the model), 2000 tensors of 1000 elements, one tensor of 16 M elements. Optimizers: DiffGrad (foreach, the default;
foreach=False; fused=True), torch.optim.Adam (foreach=True, fused=True) and torch-optimizer's DiffGrad when it is
installed (`pip install torch-optimizer`; not a dependency). All optimizers of a case share the parameters and
their fixed random gradients and keep their own state; each repeat times one step of each optimizer, in an order
rotated every repeat, so slow drifts of a shared machine hit all of them alike; the table shows medians.

Bandwidth floor: the time the memory system needs to move the bytes a step must move. An Adam step reads theta, g,
m, v and writes theta, m, v: 7 floats per element; diffGrad also reads and writes the previous gradient: 9
(AMSGrad is not benchmarked). The floor is measured in the same run by `a.add_(b)` on two flat float32 buffers of
3n elements each (n = the case's element count): it reads a and b and writes a, 9n floats, with the
read-modify-write pattern of the optimizer's state (no write-allocate reads a copy into a fresh buffer would add).
floor(k floats) = k/9 of that time; the table's "× floor" divides each median by the floor of its own byte count.
Ratios use medians; "best" (the fastest of the repeats, and its ratio to the fastest floor) is shown beside them
because on a machine shared with other jobs the fastest repeat is the one least disturbed by them.
"""
import argparse, math, os, platform, statistics, sys, tempfile, time
import torch

def resnet50_cifar_shapes(num_classes: int = 10) -> list:
    "Parameter shapes of the CIFAR ResNet50 (3x3 stem conv without bias, Bottleneck stages [3, 4, 6, 3], linear head)."
    shapes = [(64, 3, 3, 3), (64,), (64,)]
    inplanes = 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            shapes += [(planes, inplanes, 1, 1), (planes,), (planes,), (planes, planes, 3, 3), (planes,), (planes,),
                       (4 * planes, planes, 1, 1), (4 * planes,), (4 * planes,)]
            if b == 0: shapes += [(4 * planes, inplanes, 1, 1), (4 * planes,), (4 * planes,)]   # downsample
            inplanes = 4 * planes
    return shapes + [(num_classes, 2048), (num_classes,)]

RESNET50 = resnet50_cifar_shapes()
assert len(RESNET50) == 161 and sum(math.prod(s) for s in RESNET50) == 23_520_842, "CIFAR ResNet50 shapes changed"
CASES = {'resnet50-cifar': RESNET50, '2000x1000': [(1000,)] * 2000, '16M': [(16 * 2 ** 20,)]}

def optimizers(params, device, with_compile=False):
    "(name, make, floats moved per element) for each optimizer under test."
    from diffgrad_nb.optim import DiffGrad
    yield 'DiffGrad (foreach, default)', lambda: DiffGrad(params), 9
    yield 'DiffGrad (foreach=False)', lambda: DiffGrad(params, foreach=False), 9
    yield 'DiffGrad (fused=True)', lambda: DiffGrad(params, fused=True), 9
    if with_compile and device == 'cpu': yield 'DiffGrad (fused, torch.compile backend)', lambda: _CompiledOnCPU(DiffGrad(params, fused=True)), 9
    yield 'Adam (foreach=True)', lambda: torch.optim.Adam(params, foreach=True), 7
    yield 'Adam (fused=True)', lambda: torch.optim.Adam(params, fused=True), 7
    try: import torch_optimizer
    except ImportError: return
    yield f'torch-optimizer {torch_optimizer.__version__} DiffGrad', lambda: torch_optimizer.DiffGrad(params), 9

class _CompiledOnCPU:
    "A fused DiffGrad whose steps run through the torch.compile backend on the CPU (for comparison with the C kernel)."
    def __init__(self, opt): self.opt = opt
    def step(self):
        from diffgrad_nb.functional import use_backend
        with use_backend('cpu', 'compile'): self.opt.step()

def sync(device):
    if device == 'cuda': torch.cuda.synchronize()

def run_case(name, shapes, args):
    dev = args.device
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(s, generator=gen).to(dev).requires_grad_() for s in shapes]
    for p in params: p.grad = (torch.randn(p.shape, generator=gen) * 1e-2).to(dev)
    n = sum(p.numel() for p in params)
    a, b = torch.randn(3 * n, device=dev), torch.randn(3 * n, device=dev)
    floor = lambda: a.add_(b)
    opts, first = [], {}
    for oname, make, floats in optimizers(params, dev, args.compile):
        sync(dev); t0 = time.perf_counter()
        opt = make(); opt.step(); sync(dev)
        first[oname] = time.perf_counter() - t0                # construction + first step: state, kernel build/compile
        opts.append((oname, opt.step, floats))
    timed = opts + [('floor', floor, 9)]
    times = {k: [] for k, _, _ in timed}
    for _ in range(args.warmup):
        for _, f, _ in timed: f()
    for r in range(args.repeats):
        for k, f, _ in timed[r % len(timed):] + timed[:r % len(timed)]:   # rotate the order each repeat
            sync(dev); t0 = time.perf_counter(); f(); sync(dev)
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    adam_fe, adam_fu = med['Adam (foreach=True)'], med['Adam (fused=True)']
    print(f"\n### {name}: {len(shapes)} tensor{'s' if len(shapes) > 1 else ''}, {n / 1e6:.1f} M elements ({dev}, {torch.get_num_threads()} threads)\n")
    best = {k: min(v) * 1e3 for k, v in times.items()}
    print("| optimizer | median (ms) | × Adam(foreach) | × Adam(fused) | × floor | best (ms) | × floor, best | first step (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k, _, floats in opts:
        print(f"| {k} | {med[k]:.1f} | {med[k] / adam_fe:.2f} | {med[k] / adam_fu:.2f} | "
              f"{med[k] / (med['floor'] * floats / 9):.2f} | {best[k]:.1f} | {best[k] / (best['floor'] * floats / 9):.2f} | {first[k]:.2f} |")
    print(f"| floor: `a.add_(b)`, 9 floats/element | {med['floor']:.1f} | | | 1.00 | {best['floor']:.1f} | 1.00 | |")
    spread = {k: (max(v) - min(v)) / statistics.median(v) for k, v in times.items()}
    worst = max(spread, key=spread.get)
    print(f"\n(noise: (max - min) / median over {args.repeats} repeats is at most {spread[worst]:.0%}, for {worst})")
    del opts, params, a, b

def kernel_build_seconds():
    "Cold build time of the fused C kernel, in a fresh cache directory."
    from diffgrad_nb import fused as F
    with tempfile.TemporaryDirectory() as tmp:
        os.environ['DIFFGRAD_NB_CACHE'], old = tmp, os.environ.get('DIFFGRAD_NB_CACHE')
        t0 = time.perf_counter()
        try: F._build(os.environ.get('CC') or 'cc', *F._FLAG_SETS[0])
        finally:
            if old is None: os.environ.pop('DIFFGRAD_NB_CACHE')
            else: os.environ['DIFFGRAD_NB_CACHE'] = old
        return time.perf_counter() - t0

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: leave as is)')
    ap.add_argument('--repeats', type=int, default=21, help='timed steps per optimizer (interleaved)')
    ap.add_argument('--warmup', type=int, default=2, help='untimed steps per optimizer after the first')
    ap.add_argument('--quick', action='store_true', help='3 repeats, 1 warm-up: a smoke run')
    ap.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    ap.add_argument('--cases', nargs='+', default=list(CASES), choices=list(CASES))
    ap.add_argument('--compile', action='store_true', help='also time the torch.compile backend of the fused step on the CPU '
                                                         '(compiles for minutes on the 161 and 2000 tensor cases)')
    args = ap.parse_args(argv)
    if args.quick: args.repeats, args.warmup = 3, 1
    if args.threads: torch.set_num_threads(args.threads)
    if args.device == 'cuda' and not torch.cuda.is_available(): sys.exit('--device cuda: no CUDA device available')
    dev_name = torch.cuda.get_device_name() if args.device == 'cuda' else (platform.processor() or platform.machine())
    print(f"`{' '.join(['python benchmarks/step_speed.py'] + (argv if argv is not None else sys.argv[1:]))}`: torch {torch.__version__}, "
          f"{args.device} ({dev_name}), {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at start")
    if args.device == 'cpu': print(f"\nfused C kernel: cold build {kernel_build_seconds():.2f} s (then cached on disk)")
    for c in args.cases: run_case(c, CASES[c], args)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")

if __name__ == '__main__': main()

"""`torch.compile(opt.step, fullgraph=True)` on every path of DiffGrad: parity with eager, graph breaks, recompiles.

Each case runs in a fresh Python process (this file run as a script), so that a crash of the compiled step (the fused
kernel was once handed pointers of traced tensors and killed the process) is a test failure and not a dead test
runner, and so that dynamo's counters and caches start empty. The child builds a tiny model's parameters, runs 10
steps eagerly and 10 steps through `torch.compile(opt.step)` from the same start with the same gradients, with a
tensor learning rate that an `ExponentialLR` scheduler changes after every step, and reports: the largest
difference of every parameter and state buffer between compiled and eager, the graph breaks
(`torch._dynamo.utils.counters['graph_break']`), the graphs compiled after the second step (the first creates the state,
which costs one recompile as for torch.optim.Adam; then a scheduler changing a tensor lr must not recompile), and the time of the first compiled step (CPU inductor compiles are slow: tens of
seconds on a 2-core machine).

The kernel counts of the compiled fused step (`fused=True`, whose CUDA backend is torch.compile) are asserted here
too, on a machine without a GPU: for CUDA from the wrapper inductor writes for fake CUDA tensors
(benchmarks/cuda_codegen.py), for the CPU backend from `run_and_get_code`. A step must be a few kernels whatever the
number of tensors, and its CUDA wrapper must do no host work (no CPU kernel or buffer, no `.item()`, no copy).
And the graph dynamo and AOTAutograd trace for a fused step on fake CUDA tensors (`FakeTensorMode`: shapes, dtypes and
devices, no memory) must hold CUDA tensors only (nothing to copy to or from the host) and no `.item()` (a sync).
These three check what the pinned torch's compiler makes of the step (scripts/test_oldest_torch.sh leaves them out).
"""
import json, os, subprocess, sys, time
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(8, 4), (8,), (3, 8), (3,)]            # a tiny two-layer model: compile time, not size, is what costs
CASES = {   # path -> (DiffGrad path arguments, fullgraph promised: the fused kernel is one opaque custom op)
    'foreach': (dict(), True),
    'for-loop': (dict(foreach=False), True),
    'fused': (dict(fused=True), True),
}
RTOL, ATOL = 1e-5, 1e-6                          # the reference tolerances of the optimizer notebook's float32 checks


def _child(case):
    "Run one case; print a JSON report on the last line."
    import warnings
    import torch
    from torch._dynamo.utils import counters
    warnings.filterwarnings('ignore', message='Detected call of .lr_scheduler.step')   # opt.step compiled before the scheduler wrapped it
    from diffgrad_nb import DiffGrad
    path_kw, fullgraph = CASES[case]

    def run(compiled):
        gen = torch.Generator().manual_seed(0)
        params = [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]
        opt = DiffGrad(params, lr=torch.tensor(0.01), weight_decay=0.01, amsgrad=True, **path_kw)
        # compiled before the scheduler wraps opt.step (dynamo does not trace into lr_scheduler.py; with a scheduler
        # attached first, compile a function calling opt.step() with fullgraph=False, as PyTorch's tutorial does)
        step = torch.compile(opt.step, fullgraph=fullgraph) if compiled else opt.step
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
        grads = torch.Generator().manual_seed(1)
        graphs_after_second, first = None, None
        for k in range(10):
            for p in params: p.grad = torch.randn(p.shape, generator=grads)
            t0 = time.perf_counter(); step(); dt = time.perf_counter() - t0
            sched.step()
            if k == 0: first = dt
            if k == 1: graphs_after_second = counters['stats']['unique_graphs']   # the first step creates the state
        return params, opt, graphs_after_second, first

    eager_params, eager_opt, _, _ = run(False)
    counters.clear()
    params, opt, graphs_after_second, first = run(True)
    diff = {}
    for i, (a, b) in enumerate(zip(params, eager_params)):
        diff['param'] = max(diff.get('param', 0.0), (a - b).abs().max().item())
        ok = torch.allclose(a, b, rtol=RTOL, atol=ATOL)
        for k, v in opt.state[a].items():
            w = eager_opt.state[b][k]
            diff[k] = max(diff.get(k, 0.0), (v - w).abs().max().item())
            ok = ok and torch.allclose(v, w, rtol=RTOL, atol=ATOL)
        if not ok: diff.setdefault('not_close', []).append(i)
    report = dict(case=case, diff=diff, graph_breaks=sum(counters['graph_break'].values()),
                  break_reasons=sorted(counters['graph_break']), graphs=counters['stats']['unique_graphs'],
                  graphs_after_second=graphs_after_second, first_step_s=round(first, 1),
                  lr_end=opt.param_groups[0]['lr'].item(), lr_is_tensor=isinstance(opt.param_groups[0]['lr'], torch.Tensor))
    print(json.dumps(report))


@pytest.mark.parametrize('case', list(CASES))
def test_compiled_step(case):
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, __file__, case], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    assert res.returncode == 0, (f'{case}: the compiled step failed (exit code {res.returncode}; a negative code is a '
                                 f'signal, -11 a segmentation fault):\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}')
    report = json.loads(res.stdout.strip().splitlines()[-1])
    print(f'{case}: {report} ({wall:.0f} s with the eager run and start-up)')
    assert 'not_close' not in report['diff'], report
    assert set(report['diff']) == {'param', 'step', 'exp_avg', 'exp_avg_sq', 'prev_grad', 'max_exp_avg_sq'}, report
    assert report['diff']['step'] == 0, report
    if CASES[case][1]: assert report['graph_breaks'] == 0, report          # fullgraph promised: no break at all
    assert report['graphs'] >= 1, report                                   # it really compiled something
    # the first step creates the state (one recompile when the second sees it, as for torch.optim.Adam); after that
    # the scheduler's new lr every step must not recompile
    assert report['graphs'] == report['graphs_after_second'] <= 2, report
    assert report['lr_is_tensor'] and abs(report['lr_end'] / (0.01 * 0.9 ** 10) - 1) < 1e-6, report   # float32 lr


def _kernels(case):
    "Kernel launches of one compiled fused step over N tensors; print a JSON report on the last line."
    import re, torch
    sys.path.insert(0, str(ROOT / 'benchmarks'))
    import cuda_codegen
    from step_speed import RESNET50
    from diffgrad_nb import functional as FN
    from diffgrad_nb.optim import DiffGrad
    out = {}
    for n in KERNEL_TENSORS:
        if case == 'cuda_kernels':                     # the wrapper inductor writes for CUDA (Triton), nothing compiled
            wrapper, steps_on = cuda_codegen.generated_step(n, weight_decay=0.1)
            out[n] = dict(cuda_codegen.count(wrapper), steps_on=sorted(steps_on))
        else:                                          # the CPU backend, compiled and run (small shapes: compile time)
            from torch._inductor.utils import run_and_get_code
            ps = [torch.randn([max(1, d // 16) for d in s], requires_grad=True) for s in RESNET50[:n]]
            for p in ps: p.grad = torch.randn_like(p)
            with FN.use_backend('cpu', 'compile'):
                opt = DiffGrad(ps, fused=True, weight_decay=0.1)
                _, code = run_and_get_code(opt.step)
            call = code[0][code[0].index('def call('):]
            out[n] = dict(cpu_launches=len(re.findall(r'^\s+cpp_fused\w*\(', call, re.M)),
                          extern_calls=sorted(set(re.findall(r'= (torch\.ops\.[\w.]+|extern_kernels\.\w+)\(', call))))
    print(json.dumps(out))


KERNEL_TENSORS = (10, 50)
# measured (nbs/01b_functional.ipynb, "The torch.compile backend"): Triton 2 and 5 launches, CPU backend 1 and 2; before
# the per-tensor sigmoid the CPU backend launched one kernel per tensor and one more (11, 51)
MAX_LAUNCHES = {10: 3, 50: 6}


@pytest.mark.parametrize('case', ['cuda_kernels', 'cpu_kernels'])
def test_fused_step_kernels(case):
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}
    res = subprocess.run([sys.executable, __file__, case], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f'{case}: exit code {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}'
    report = {int(k): v for k, v in json.loads(res.stdout.strip().splitlines()[-1]).items()}
    print(case, report)
    for n, r in report.items():
        launches = r['triton_launches'] if case == 'cuda_kernels' else r['cpu_launches']
        assert 1 <= launches <= MAX_LAUNCHES[n], (n, r)            # a few kernels, not one per tensor
        assert r['extern_calls'] == [], (n, r)                      # no opaque op splitting the fused kernels
        if case == 'cuda_kernels':
            assert r['host_work'] == [] and r['steps_on'] == ['cuda:0'], (n, r)   # nothing on or from the host


def _cuda_graph(case):
    "Devices and ops of the functional ATen graph of one fused step over fake CUDA tensors; a JSON report."
    import functools, torch
    from unittest import mock
    from torch._functorch.aot_autograd import aot_module_simplified
    from torch._subclasses.fake_tensor import FakeTensorMode
    from diffgrad_nb import functional as FN
    from diffgrad_nb.optim import DiffGrad
    out = {}
    for name, kwargs in GRAPH_CASES.items():
        graphs = []
        def capture(gm, example_inputs):   # AOTAutograd's graph, kept instead of compiled
            return aot_module_simplified(gm, example_inputs, fw_compiler=lambda g, _: graphs.append(g) or g)
        with FakeTensorMode():
            ps = [torch.empty(3 + i, device=f'cuda:{i % 2}' if name == 'two GPUs' else 'cuda').requires_grad_() for i in range(4)]
            for p in ps: p.grad = torch.empty_like(p)
        with mock.patch.object(FN, 'has_triton', lambda: True):   # fused_unavailable asks for a GPU Triton can use
            opt = DiffGrad(ps, fused=True, **kwargs(torch))
        try:
            with mock.patch.object(torch, 'compile', functools.partial(torch.compile, backend=capture)): opt.step()
        finally: FN._COMPILED.clear(); FN._LR.clear()      # the next case has fake tensors of its own
        devices, ops = [], set()                          # the devices of each graph's tensors
        for g in graphs:
            devices.append(set())
            for node in g.graph.nodes:
                vals = node.meta.get('val')
                devices[-1] |= {str(v.device) for v in (vals if isinstance(vals, (list, tuple)) else [vals]) if isinstance(v, torch.Tensor)}
                if node.op == 'call_function': ops.add(str(node.target))
        out[name] = dict(graphs=len(graphs), devices=sorted(sorted(d) for d in devices), ops=sorted(ops),
                         steps_on=sorted({str(opt.state[p]['step'].device) for p in ps}))
    print(json.dumps(out))


GRAPH_CASES = {   # a float lr; a scheduler's CPU tensor lr with the other flags; one group over two GPUs
    'float lr': lambda torch: dict(lr=0.01),
    'two GPUs': lambda torch: dict(lr=0.01),
    'CPU tensor lr, amsgrad, weight decay, dfc1': lambda torch: dict(lr=torch.tensor(0.01), amsgrad=True, weight_decay=0.1,
                                                                    friction='dfc1'),
}


def test_fused_step_cuda_graph_on_device():
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}
    res = subprocess.run([sys.executable, __file__, 'cuda_graph'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f'exit code {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-6000:]}'
    report = json.loads(res.stdout.strip().splitlines()[-1])
    for name, r in report.items():
        print(name, {k: v for k, v in r.items() if k != 'ops'})
        gpus = ['cuda:0', 'cuda:1'] if name == 'two GPUs' else ['cuda:0']
        assert r['graphs'] == len(gpus) and r['steps_on'] == gpus, (name, r)     # a graph per GPU; step counts there
        assert r['devices'] == [[d] for d in gpus], (name, r)                   # no host tensor: nothing to copy
        assert not [o for o in r['ops'] if 'local_scalar_dense' in o or 'to_copy' in o or 'device_put' in o], (name, r)
        assert any('_foreach_addcdiv' in o for o in r['ops']), (name, r)        # the whole step is in this graph


if __name__ == '__main__': ({'cuda_graph': _cuda_graph}.get(sys.argv[1]) or (_kernels if sys.argv[1].endswith('_kernels') else _child))(sys.argv[1])

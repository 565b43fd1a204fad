#!/usr/bin/env python
"""The CUDA code inductor generates for `DiffGrad(fused=True)`'s step, on a machine WITHOUT a GPU.

    .venv/bin/python benchmarks/cuda_codegen.py                 # Triton launches per step for 10, 50, 161 tensors
    .venv/bin/python benchmarks/cuda_codegen.py --tensors 161 --show   # and print the generated wrapper

The parameters are fake CUDA tensors (`torch._subclasses.FakeTensorMode`: shapes, dtypes and devices, no memory),
so dynamo, AOTAutograd and inductor's lowering and scheduling run exactly as for a real GPU. Inductor asks the
driver for the device's properties and Triton's backend hash only to write the kernels' launch metadata: those
few calls are answered here for an H100-class device (compute capability 9.0, 132 SMs), and code generation stops
after inductor has written the Python wrapper (the code that launches the kernels), before any kernel is compiled.
What comes out is the wrapper inductor would run on CUDA: its kernel launches (`<kernel>.run(...)`) are counted,
and it is checked for host work in the step (CPU buffers or kernels, `.item()`, copies between devices).

One more difference: inductor's decomposition of `_foreach_lerp_(m, g, w)` (the first moment) makes the weight w a
tensor constant on the device, which tracing folds by running the real operation: impossible without a driver. Here
the decomposition is m + (g - m) * w with w a number written into the kernel; on a GPU w is a constant tensor made
once at compile time and read by the kernel. Neither is a copy in the step, nor a kernel of its own.

The patched names are inductor internals of the torch this was written for (2.14); another version may move them,
which makes this script fail with an AttributeError, not give a wrong count. shapes: the CIFAR ResNet50's
(benchmarks/step_speed.py), the first N of them.
"""
import argparse, collections, contextlib, re, sys, unittest.mock as mock
from pathlib import Path
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch._inductor.graph import GraphLowering
from torch._dynamo.device_interface import CudaInterface
from torch._inductor import decomposition

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_speed import RESNET50

_Props = collections.namedtuple('_Props', 'name major minor multi_processor_count total_memory warp_size '
                                'max_threads_per_multi_processor regs_per_multiprocessor max_threads_per_block')
H100 = _Props('pretend H100', 9, 0, 132, 80 * 2 ** 30, 32, 2048, 65536, 1024)

class _Written(Exception): "Raised once inductor has written the wrapper: nothing is compiled or run."

def _foreach_lerp_scalar(starts, ends, weight):
    "Inductor's decomposition of `_foreach_lerp_(m, g, w)` with the weight a number in the kernel (see above)."
    return torch.ops.aten._foreach_add.List(starts, torch.ops.aten._foreach_sub.List(ends, starts), alpha=weight)

@contextlib.contextmanager
def pretend_cuda():
    "Let inductor generate CUDA code without a GPU; yields the list the generated wrapper sources are appended to."
    sources, codegen = [], GraphLowering.codegen
    def keep(self, *a, **k):
        out = codegen(self, *a, **k)
        sources.append(getattr(out[0], 'value', out[0]))
        raise _Written()
    props = staticmethod(lambda *a, **k: H100)
    lerp = torch.ops.aten._foreach_lerp.Scalar
    with mock.patch.dict(decomposition.decompositions, {lerp: _foreach_lerp_scalar}), \
         mock.patch('torch.cuda.get_device_properties', props), \
         mock.patch('torch.cuda.get_device_capability', lambda *a, **k: (H100.major, H100.minor)), \
         mock.patch('torch.cuda.current_device', lambda: 0), \
         mock.patch.object(CudaInterface, 'get_device_properties', props), \
         mock.patch.object(CudaInterface, 'get_compute_capability', staticmethod(lambda *a, **k: 90)), \
         mock.patch('torch._inductor.scheduler.has_triton', lambda: True), \
         mock.patch('torch.utils._triton.triton_hash_with_backend', lambda: 'pretend'), \
         mock.patch.object(GraphLowering, 'codegen', keep):
        yield sources

def fake_cuda_params(shapes, dtype=torch.float32):
    "Fake CUDA parameters with fake gradients (made in a FakeTensorMode; usable outside it)."
    with FakeTensorMode():
        params = [torch.empty(s, device='cuda', dtype=dtype).requires_grad_() for s in shapes]
        for p in params: p.grad = torch.empty_like(p)
    return params

def generated_step(n_tensors, **kwargs):
    "The CUDA wrapper inductor writes for one DiffGrad(fused=True, **kwargs) step over the first `n_tensors` ResNet50 shapes."
    from diffgrad_nb import functional as FN
    from diffgrad_nb.optim import DiffGrad
    params = fake_cuda_params(RESNET50[:n_tensors])
    lrs = getattr(FN, '_LR', {})                                  # (absent before the lr was kept on the device)
    saved = dict(FN._COMPILED), dict(lrs)
    try:
        with mock.patch.object(FN, 'has_triton', lambda: True):    # fused_unavailable asks for a GPU Triton can use
            opt = DiffGrad(params, fused=True, **kwargs)
        torch._dynamo.reset()
        with pretend_cuda() as sources:
            try: opt.step()
            except Exception as e:
                if not sources: raise
                if not isinstance(e, _Written) and '_Written' not in repr(e): raise
        steps_on = {str(opt.state[p]['step'].device) for p in params}
    finally:
        FN._COMPILED.clear(); FN._COMPILED.update(saved[0]); lrs.clear(); lrs.update(saved[1])
        torch._dynamo.reset()
    assert len(sources) == 1, f'expected one graph, inductor wrote {len(sources)}'
    return sources[0], steps_on

def count(wrapper):
    "Kernel launches and host work in a generated wrapper's `call`."
    call = wrapper[wrapper.index('def call('):]
    return dict(triton_launches=len(re.findall(r'^\s+\w+\.run\(', call, re.M)),
                extern_calls=sorted(set(re.findall(r'= (torch\.ops\.[\w.]+|extern_kernels\.\w+)\(', call))),
                host_work=sorted(set(re.findall(r'empty_strided_cpu|cpp_fused\w*|\.item\(\)|\.cpu\(\)|\.to\(|device_put|'
                                                r'copy_\(|_local_scalar_dense', call))))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--tensors', type=int, nargs='+', default=[10, 50, 161])
    ap.add_argument('--show', action='store_true', help='print the generated wrapper of the last count')
    a = ap.parse_args(argv)
    for n in a.tensors:
        wrapper, steps_on = generated_step(n)
        print(f'{n} tensors: {count(wrapper)}, step counts on {sorted(steps_on)}', flush=True)
    if a.show: print(wrapper)

if __name__ == '__main__': main()

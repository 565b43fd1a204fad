"""Host syncs in the training loop (issue 17 point 3). A GPU runs ahead of Python until something asks for a value
on the host (`.item()`, `.tolist()`, `bool(t)`, a copy from pageable memory): each such sync stalls it. The loop must
have none per step, only one per `DIVERGENCE_CHECK_EVERY` steps. Measured as the difference between a run of N and
one of 2N steps (what set-up, evaluation and the end of an epoch cost is the same in both), on the CPU by counting the
tensor methods that read a value on the host, on CUDA with torch's sync debug mode. Runs as pytest or as a script
(benchmarks/gpu_check.sh). About 10 s on the CPU."""
import sys, tempfile, warnings
from contextlib import contextmanager
from pathlib import Path
import pytest, torch
from diffgrad_nb import train as T

HOST_READS = ('item', 'tolist', '__bool__', '__float__', '__int__')
LOOP_FILES = {Path(T.__file__).name, 'data.py'}   # the loop and its batches; the optimizer's own step counters are CPU tensors, as torch's

@contextmanager
def counting_host_reads():
    "count calls, from the training loop's modules, of the tensor methods that bring a value to the host"
    count = [0]
    saved = {m: getattr(torch.Tensor, m) for m in HOST_READS}
    def counted(f):
        def g(*a, **k):
            if Path(sys._getframe(1).f_code.co_filename).name in LOOP_FILES: count[0] += 1
            return f(*a, **k)
        return g
    for m, f in saved.items(): setattr(torch.Tensor, m, counted(f))
    try: yield count
    finally:
        for m, f in saved.items(): setattr(torch.Tensor, m, f)

def _run(steps, device, out, check_every):
    cfg = T.TrainConfig(model='small', dataset='fake', epochs=1, batch_size=8, train_limit=8*steps, max_steps_per_epoch=steps,
                        test_limit=16, eval_batch_size=16, progress=False, device=device, out_dir=str(out))
    T.train(cfg)

def syncs_per_step(counter, device, steps=10, check_every=5):
    "(extra host syncs of a run of 2*steps over one of `steps`) / steps, with the divergence check every `check_every` steps"
    saved, T.DIVERGENCE_CHECK_EVERY = getattr(T, 'DIVERGENCE_CHECK_EVERY', None), check_every
    try:
        with tempfile.TemporaryDirectory() as d:
            _run(2, device, Path(d)/'warm', check_every)   # first-call costs (allocator, cuDNN) outside the count
            n = []
            for s in (steps, 2*steps):
                with counter() as c: _run(s, device, Path(d)/f'r{s}', check_every)
                n.append(c[0])
    finally: T.DIVERGENCE_CHECK_EVERY = saved
    return (n[1] - n[0])/steps, n

def test_host_reads_per_step_on_the_cpu():
    per_step, counts = syncs_per_step(counting_host_reads, 'cpu')
    assert per_step <= 1/5, f'{per_step:.2f} host reads per step (runs of 10 and 20 steps: {counts}); at most one per check of 5 steps'

@contextmanager
def counting_cuda_syncs():
    "count the synchronizing CUDA calls torch's sync debug mode reports"
    count = [0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try: yield count
        finally:
            torch.cuda.synchronize(); torch.cuda.set_sync_debug_mode('default')
            count[0] = sum('synchronizing' in str(w.message) for w in caught)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA: torch.cuda.set_sync_debug_mode counts device syncs (benchmarks/gpu_check.sh runs it)')
def test_cuda_syncs_per_step():
    per_step, counts = syncs_per_step(counting_cuda_syncs, 'cuda')
    assert per_step <= 1/5, f'{per_step:.2f} CUDA syncs per step (runs of 10 and 20 steps: {counts}); at most one per check of 5 steps'

if __name__ == '__main__':   # benchmarks/gpu_check.sh: print the counts, fail like the tests
    dev = sys.argv[1] if len(sys.argv) > 1 else ('cuda' if torch.cuda.is_available() else 'cpu')
    per_step, counts = syncs_per_step(counting_cuda_syncs if dev == 'cuda' else counting_host_reads, dev)
    print(f'host syncs per training step on {dev}: {per_step:.2f} (counts for 10 and 20 steps: {counts})')
    raise SystemExit(0 if per_step <= 1/5 else 1)

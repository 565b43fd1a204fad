"""Kill a `diffgrad_train` run with SIGKILL in the middle of training, run the same command again, and check that it
ends with the weights, optimizer state and metrics of a run that was never interrupted, bit for bit.

CPU, small CIFAR ResNet on the fake data set, with augmentation, a checkpoint every 2 steps: 30-60 s on the
shared 2-core dev machine, mostly the start-up of three Python processes. OMP_NUM_THREADS=1 keeps every CPU kernel's summation order the same between the processes."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import torch

# the reference runs as `python -m diffgrad_nb.train`, the killed and resumed runs as the installed console script:
# both entry points must compute the same thing
MODULE = [sys.executable, '-m', 'diffgrad_nb.train']
SCRIPT = [str(Path(sys.executable).parent/'diffgrad_train')]
ARGS = ['--model', 'small', '--dataset', 'fake', '--epochs', '2', '--batch_size', '16', '--max_steps_per_epoch', '6',
        '--test_limit', '64', '--checkpoint_every_steps', '2', '--seed', '1', '--no-progress']
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}
ENV.pop('WORLD_SIZE', None)

def _cmd(out, entry=SCRIPT): return entry + ARGS + ['--out_dir', str(out)]

def _metrics(out):
    "metrics.jsonl without the wall-clock fields, which differ between any two runs"
    rows = [json.loads(l) for l in (out/'metrics.jsonl').read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith('_s')} for r in rows]

def test_sigkill_then_resume_is_bit_identical(tmp_path):
    ref, out = tmp_path/'uninterrupted', tmp_path/'killed'
    r = subprocess.run(_cmd(ref, MODULE), env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    p = subprocess.Popen(_cmd(out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ckpt, deadline = out/'checkpoint.pt', time.time() + 240
    while not ckpt.exists():                       # kill as soon as there is something to resume from
        assert p.poll() is None, f'the run ended before writing a checkpoint:\n{p.stderr.read()[-3000:]}'
        assert time.time() < deadline, 'no checkpoint after 240 s'
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert not (out/'summary.json').exists(), 'the run had finished before the kill: nothing was tested'
    at = torch.load(ckpt, weights_only=True)['run']
    assert at['global_step'] < 2*6, at

    r = subprocess.run(_cmd(out), env=ENV, capture_output=True, text=True, timeout=300)   # the same command again
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out/'summary.json').read_text())
    assert s['status'] == 'completed' and s['epochs_done'] == 2
    assert s['resumed_from'] is not None and s['resumed_from']['epoch']*6 + s['resumed_from']['step'] >= 2

    a, b = torch.load(ref/'model.pt', weights_only=True), torch.load(out/'model.pt', weights_only=True)
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), f'{k} differs after resuming'
    oa = torch.load(ref/'checkpoint.pt', weights_only=True)['optimizer']['state']
    ob = torch.load(out/'checkpoint.pt', weights_only=True)['optimizer']['state']
    for i in oa:
        for k in oa[i]: assert torch.equal(oa[i][k], ob[i][k]), f'optimizer state {i}.{k} differs after resuming'
    assert _metrics(ref) == _metrics(out)

"""GPU-path defects of the training loop found by reading (issue 17 point 6), checked on the CPU: a checkpoint holds
the RNG state of the run's own GPU only (resuming on a machine with fewer GPUs works), and with torch.compile the last, smaller batch of an epoch is dropped. About 10 s."""
import json
import pytest, torch
from diffgrad_nb import train as T

def test_rng_state_holds_the_run_device_only(monkeypatch):
    "torch.cuda is replaced by fakes for 4 GPUs: a run on cuda:1 saves cuda:1's state and restores it onto its own device"
    states = {i: torch.full((8,), i, dtype=torch.uint8) for i in range(4)}
    restored = []
    def all_states(): raise AssertionError('the states of every visible GPU were saved')
    monkeypatch.setattr(torch.cuda, 'get_rng_state_all', all_states)
    monkeypatch.setattr(torch.cuda, 'set_rng_state_all', lambda s: restored.append(('all', len(s))))
    monkeypatch.setattr(torch.cuda, 'get_rng_state', lambda device='cuda': states[torch.device(device).index])
    monkeypatch.setattr(torch.cuda, 'set_rng_state', lambda s, device='cuda': restored.append((s[0].item(), torch.device(device))))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: True)
    s = T.rng_state(torch.device('cuda', 1))
    assert torch.equal(s['cuda'], states[1])
    T.set_rng_state(s, torch.device('cuda', 0))          # resumed on a machine where the run's GPU is cuda:0
    assert restored == [(1, torch.device('cuda', 0))], restored
    assert 'cuda' not in T.rng_state(torch.device('cpu'))

SMALL = dict(model='small', dataset='fake', epochs=1, batch_size=32, train_limit=80, test_limit=32, eval_batch_size=32,
             progress=False, device='cpu')

def test_compile_drops_the_last_partial_batch(tmp_path, monkeypatch):
    "80 images at batch 32: 2 full batches and one of 16; compiled, the 16 are dropped (torch.compile is made a no-op here)"
    monkeypatch.setattr(torch, 'compile', lambda m, **k: m)
    T.train(T.TrainConfig(**SMALL, out_dir=str(tmp_path/'eager')))
    T.train(T.TrainConfig(**SMALL, compile=True, out_dir=str(tmp_path/'compiled')))
    images = lambda d: [json.loads(l)['images'] for l in (tmp_path/d/'metrics.jsonl').read_text().splitlines()]
    assert images('eager') == [80] and images('compiled') == [64], (images('eager'), images('compiled'))
    assert 'compile' not in T.RESUMABLE_CHANGES   # it changes which images an epoch sees

def test_cublas_workspace_config_is_set_on_import():
    "cuBLAS reads it once, at the process's first cuBLAS call: importing the training module sets it (a user's own value kept)"
    import os, subprocess, sys
    code = 'import os, diffgrad_nb.train; print(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))'
    env = {k: v for k, v in os.environ.items() if k != 'CUBLAS_WORKSPACE_CONFIG'}
    r = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert r.stdout.strip() == ':4096:8', r.stdout + r.stderr[-2000:]
    r = subprocess.run([sys.executable, '-c', code], env={**env, 'CUBLAS_WORKSPACE_CONFIG': ':16:8'}, capture_output=True, text=True, timeout=300)
    assert r.stdout.strip() == ':16:8', r.stdout + r.stderr[-2000:]

def test_notebook_cpu_cells_pin_the_cpu():
    "06_train's tests must not run on CUDA where there is one (cudnn.benchmark, a first cuBLAS call before the gpu cell): every run outside the gpu cell names the CPU"
    import re
    from pathlib import Path
    nb = json.loads((Path(__file__).resolve().parents[1]/'nbs'/'06_train.ipynb').read_text())
    cells = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code']
    cpu_cells = [s for s in cells if not s.startswith(('#| gpu', '#| export'))]
    assert any('smoke = dict(' in s and 'device="cpu"' in s for s in cpu_cells), 'the smoke config must pin device="cpu"'
    for s in cpu_cells:
        for call in re.findall(r'(?:train|measure_throughput)\((?:TrainConfig\()?([^\n]*)', s):
            assert 'smoke' in call or 'device' in call or call.startswith(('m_', 'cfg', 'config')), f'not pinned to the CPU: {call}'
        for call in re.findall(r'main\((\[[^\]]*\])', s):
            assert '"--device", "cpu"' in call or '--data_root' in call or 'argv' in call, f'main() not pinned to the CPU: {call}'

"""The `diffgrad_sweep` and `diffgrad_main` console scripts as installed: two shard workers sharing a grid, and the
main command's smoke scale (fake data, a few steps per cell: a pipeline check in well under a minute of CPU)."""
import csv, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}

def _run(*args, **kw): return subprocess.run([*map(str, args)], env=ENV, capture_output=True, text=True, timeout=600, cwd=ROOT, **kw)

def test_two_shards_share_a_grid_and_report(tmp_path):
    "shards 0/2 and 1/2 run at once: every cell runs exactly once; a dry run then finds all done and writes the table"
    args = [BIN/'diffgrad_sweep', '--grid', 'table3', '--preset', 'smoke', '--batch-sizes', '32', '--root', tmp_path/'runs']
    procs = [subprocess.Popen([*map(str, args), '--shard', f'{i}/2'], env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    ran = [l.split()[1] for o, _ in outs for l in o.splitlines() if l.startswith('completed')]
    assert len(ran) == 4 and len(set(ran)) == 4, ran                  # 4 activations x batch 32, each once
    r = _run(*args, '--dry-run', '--report', tmp_path/'report')
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count('done ') == 4 and '4 cells in shard 0/1 of grid table3 (4 in the grid)' in r.stdout, r.stdout
    rep = (tmp_path/'report'/'report.md').read_text()
    assert '4 of 4 cells finished' in rep and '| leaky_relu | cifar10 | 32 |' in rep and '| 94.31 |' in rep, rep
    assert (tmp_path/'report'/'table3_curves.png').stat().st_size > 1000

def test_sweep_refuses_bad_options(tmp_path):
    r = _run(BIN/'diffgrad_sweep', '--grid', 'table1', '--shard', '3/2', '--root', tmp_path)
    assert r.returncode == 2 and "shard='3/2'" in r.stderr, r.stderr
    assert not any(tmp_path.iterdir())

def test_main_smoke_writes_report_and_resumes(tmp_path):
    "the main command at its smoke scale: synthetic experiment + the Fashion-MNIST grid on fake data, then the report"
    out = tmp_path/'results'
    r = _run(BIN/'diffgrad_main', '--scale', 'smoke', '--seeds', '0', '--out', out)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rep = (out/'report.md').read_text()
    assert '## Synthetic functions F1-F3' in rep and (out/'synthetic'/'fig4.png').exists(), rep[:2000]
    assert '14 of 14 cells finished' in rep and '| Δ vs adam (paired, 95% CI) |' in rep, rep
    assert (out/'fmnist_curves.png').stat().st_size > 1000
    rows = list(csv.DictReader((out/'fmnist_results.csv').open()))
    assert len(rows) == 14 and {x['status'] for x in rows} == {'done'} and {x['seed'] for x in rows} == {'0'}
    assert 'adam_lr/2' in {x['row'] for x in rows}
    r2 = _run(BIN/'diffgrad_main', '--scale', 'smoke', '--seeds', '0', '--out', out, '--no-synthetic')   # rerun: nothing to train
    assert r2.returncode == 0 and 'completed' not in r2.stdout and r2.stdout.count('done ') == 14, r2.stdout[-3000:]

def test_main_gives_each_job_its_own_slice_of_the_inherited_gpus(tmp_path, monkeypatch):
    "a scheduler gave this job GPUs 3,5,6,7; with --torchrun 2 the two sweep workers get 3,5 and 6,7 (seen in the env each is started with)"
    import subprocess as sp, torch
    from diffgrad_nb import experiments as E
    started = []
    class Worker:
        def __init__(self, cmd, env): started.append((cmd, env))
        def wait(self): return 0
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '3,5,6,7')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 4)
    monkeypatch.setattr(E.subprocess, 'Popen', Worker)
    E.main(['--scale', 'smoke', '--torchrun', '2', '--no-synthetic', '--seeds', '0', '--out', str(tmp_path)])
    assert [e['CUDA_VISIBLE_DEVICES'] for _, e in started] == ['3,5', '6,7'], [e.get('CUDA_VISIBLE_DEVICES') for _, e in started]
    assert [c[c.index('--shard') + 1] for c, _ in started] == ['0/2', '1/2']
    started.clear()
    E.main(['--scale', 'smoke', '--no-synthetic', '--seeds', '0', '--out', str(tmp_path)])   # one GPU per job
    assert [e['CUDA_VISIBLE_DEVICES'] for _, e in started] == ['3', '5', '6', '7'], [e.get('CUDA_VISIBLE_DEVICES') for _, e in started]

"""The `diffgrad_train` console script as installed (help, bad options) and the CPU smoke mode of
benchmarks/gpu_probe.sh, which runs the same Python code as on a GPU machine."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent/'diffgrad_train'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

def _run(*args, **kw): return subprocess.run([*args], env=ENV, capture_output=True, text=True, timeout=300, cwd=ROOT, **kw)

def test_console_script_help_lists_every_option():
    from dataclasses import fields
    from diffgrad_nb.train import TrainConfig
    assert SCRIPT.exists(), f'{SCRIPT} missing: run pip install -e . (settings.ini console_scripts)'
    r = _run(str(SCRIPT), '--help')
    assert r.returncode == 0, r.stderr
    for f in fields(TrainConfig): assert f'--{f.name}' in r.stdout, f.name

def test_console_script_refuses_bad_options(tmp_path):
    "every bad value is checked in nbs/06_train.ipynb in-process; here the installed script exits 2 with the message"
    r = _run(str(SCRIPT), '--optimizer', 'adamw', '--out_dir', str(tmp_path/'run'))
    assert r.returncode == 2 and "argument --optimizer: invalid value 'adamw' (choose one of sgdm" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path/'run').exists()                      # refused before touching anything

def test_gpu_probe_cpu_smoke(tmp_path):
    "no CIFAR-10 under DIFFGRAD_DATA: the probe times its epoch on CIFAR-sized fake data, cut to 2 steps here"
    r = subprocess.run(['bash', str(ROOT/'benchmarks'/'gpu_probe.sh'), '--device', 'cpu', '--steps', '2', '--model', 'small',
                        '--batch-sizes', '4,8', '--epoch-batch-size', '8', '--epoch-steps', '2', '--out', str(tmp_path)],
                       env={**ENV, 'DIFFGRAD_DATA': str(tmp_path/'no_data')}, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    files = list(tmp_path.glob('gpu_probe_*.json'))
    assert len(files) == 1, files
    res = json.loads(files[0].read_text())
    assert [t['batch_size'] for t in res['throughput']] == [4, 8]
    assert all(t['images_per_s'] > 0 and t['loss_finite'] for t in res['throughput']), res['throughput']
    assert 'no CIFAR-10' in res['epoch_skipped']
    assert res['epoch']['dataset'] == 'fake-cifar-sized' and res['epoch']['status'] == 'completed', res['epoch']
    assert res['epoch']['metrics']['steps'] == 2 and res['epoch']['metrics']['images'] == 16, res['epoch']

"""Every command line also runs as `python -m diffgrad_nb.<module>` (the form torchrun and the sweep workers use, and
the one that works without the console scripts installed): its --help, and one real action each, on a tiny scale."""
import csv, json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
ENV.pop('WORLD_SIZE', None)
COMMANDS = {'train': 'diffgrad_train', 'sweep': 'diffgrad_sweep', 'experiments': 'diffgrad_main',
            'synthetic': 'diffgrad_synthetic', 'scale': 'python -m diffgrad_nb.scale'}

def python_m(module, *args, timeout=600):
    "run `python -m diffgrad_nb.<module> args` from the repository root"
    return subprocess.run([sys.executable, '-m', f'diffgrad_nb.{module}', *map(str, args)], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)

@pytest.mark.parametrize('module', list(COMMANDS))
def test_help(module):
    r = python_m(module, '--help', timeout=300)
    assert r.returncode == 0 and r.stdout.startswith('usage:'), r.stderr[-3000:]
    if COMMANDS[module]: assert r.stdout.startswith(f'usage: {COMMANDS[module]} '), r.stdout[:200]

def test_train_runs_a_tiny_run(tmp_path):
    r = python_m('train', '--model', 'small', '--dataset', 'fake', '--epochs', '1', '--max_steps_per_epoch', '2',
                 '--batch_size', '16', '--train_limit', '64', '--test_limit', '32', '--eval_batch_size', '32',
                 '--no-progress', '--out_dir', tmp_path/'run')
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert summary['status'] == 'completed' and summary['epochs_done'] == 1, summary
    assert json.loads((tmp_path/'run'/'summary.json').read_text())['final_test_acc'] == summary['final_test_acc']

def test_sweep_lists_a_grid_and_writes_its_report(tmp_path):
    "the sweep module's __main__ guard runs after every definition (it raised NameError for write_report before)"
    r = python_m('sweep', '--grid', 'table3', '--preset', 'smoke', '--dry-run', '--root', tmp_path/'runs',
                 '--report', tmp_path/'report', timeout=300)
    assert r.returncode == 0 and (tmp_path/'report'/'report.md').exists(), r.stderr[-3000:]
    assert '12 cells in shard 0/1 of grid table3 (12 in the grid)' in r.stdout, r.stdout

def test_experiments_runs_the_main_job_at_smoke_scale(tmp_path):
    "diffgrad_main's smoke scale on one worker, 1 epoch per cell: the 14 rows of the study trained and reported"
    out = tmp_path/'results'
    r = python_m('experiments', '--scale', 'smoke', '--seeds', '0', '--no-synthetic', '--jobs', '1',
                 '--set', 'epochs=1', '--out', out)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert '14 of 14 cells finished' in (out/'report.md').read_text()
    rows = list(csv.DictReader((out/'fmnist_results.csv').open()))
    assert len(rows) == 14 and {x['status'] for x in rows} == {'done'} and {x['epochs_done'] for x in rows} == {'1'}

def test_synthetic_runs_its_quick_grid(tmp_path):
    r = python_m('synthetic', '--out', tmp_path/'syn')
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path/'syn'/'summary.md').exists() and (tmp_path/'syn'/'fig4.png').stat().st_size > 1000

def test_scale_lists_the_committed_sweep_as_done():
    "a dry run over the committed study/ folders: every cell of both grids is finished, nothing is written"
    from diffgrad_nb.scale import all_cells
    r = python_m('scale', '--root', 'study', '--dry-run', timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert len(lines) == len(all_cells()) and all(l.startswith('done ') for l in lines), r.stdout[-3000:]
    assert not list((ROOT/'study').rglob('lock'))

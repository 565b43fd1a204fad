"""Run folders that are safe to open and fail clearly (issue 13): every fault a user met, tried on a tiny CPU run
(small ResNet, fake data, 2 epochs of 3 steps of 16 images). Each test names the fault and checks what the user
sees; nbs/06_train.ipynb's table of faults lists them. About 30-60 s on the shared 2-core dev machine."""
import errno, json, os, socket, subprocess, sys, warnings
from pathlib import Path
import pytest, torch
from diffgrad_nb import train as T
from diffgrad_nb.train import TrainConfig, ConfigError, train

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg'}
ENV.pop('WORLD_SIZE', None)
TINY = dict(model='small', dataset='fake', epochs=2, batch_size=16, max_steps_per_epoch=3, test_limit=32,
            eval_batch_size=32, checkpoint_every_steps=2, progress=False, seed=1)

class Crash(Exception): pass

def crash_at(n):
    def hook(info):
        if info['global_step'] == n: raise Crash(info)
    return hook

def partial_run(out, at=4, **kw):
    "a run folder interrupted at global step `at` (checkpoints at steps 2, 3 = end of epoch 1, and 4)"
    with pytest.raises(Crash): train(TrainConfig(**{**TINY, **kw}, out_dir=str(out)), on_step=crash_at(at + 1))
    return out

def failure(fn):
    "the exception `fn()` raises (it must raise one)"
    try: fn()
    except Exception as e: return e
    raise AssertionError('no error raised')

def is_run_folder_error(e, *words):
    assert 'RunFolderError' in [c.__name__ for c in type(e).__mro__], f'{type(e).__name__}: {e}'
    for w in words: assert w in str(e), f'{w!r} not in: {e}'

def final_weights(out): return torch.load(out/'model.pt', weights_only=True)

# 1. A checkpoint that carries code is refused, and the code does not run.
class Payload:
    "unpickling this calls open(marker, 'w'): a harmless stand-in for a shell command"
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (open, (str(self.marker), 'w'))

def test_checkpoint_carrying_code_is_refused_and_not_run(tmp_path):
    out, marker = partial_run(tmp_path/'run'), tmp_path/'marker'
    torch.save({'model': Payload(marker)}, out/'checkpoint.pt')
    (out/'checkpoint.prev.pt').unlink(missing_ok=True)
    e = failure(lambda: train(TrainConfig(**TINY, out_dir=str(out))))
    assert not marker.exists(), 'loading the checkpoint ran the code in it'
    is_run_folder_error(e, str(out/'checkpoint.pt'), 'refused')
    r = subprocess.run([sys.executable, '-m', 'diffgrad_nb.train', *T_args(out)], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and 'Traceback' not in r.stderr and 'refused' in r.stderr and not marker.exists(), r.stderr[-3000:]

def T_args(out):
    from diffgrad_nb.sweep import config_args
    return config_args(TrainConfig(**TINY, out_dir=str(out)))

def test_every_checkpoint_loads_with_weights_only(tmp_path):
    "RNG states (Python, NumPy, torch) are stored as tensors and plain data; resuming from them is still exact"
    ref = train(TrainConfig(**TINY, out_dir=str(tmp_path/'ref')))
    out = partial_run(tmp_path/'run')
    ck = torch.load(out/'checkpoint.pt', weights_only=True)
    assert ck['run']['global_step'] == 4
    s = train(TrainConfig(**TINY, out_dir=str(out)))
    assert s['resumed_from'] == dict(epoch=1, step=1) and s['final_train_loss'] == ref['final_train_loss']
    a, b = final_weights(tmp_path/'ref'), final_weights(out)
    for k in a: assert torch.equal(a[k], b[k]), k

# 2. A checkpoint is never resumed under another config, even when config.json is gone.
def test_resume_under_another_config_is_refused_without_config_json(tmp_path):
    out = partial_run(tmp_path/'run')
    (out/'config.json').unlink()
    e = failure(lambda: train(TrainConfig(**{**TINY, 'lr': 0.01}, out_dir=str(out))))
    assert isinstance(e, ConfigError) and 'lr: 0.001 in ' in str(e) and 'checkpoint.pt' in str(e), e
    assert not (out/'config.json').exists()      # nothing rewritten

# 3. A full disk: the half-written file is removed, the message says so; stale temporary files are swept on start.
def test_no_space_left_removes_the_temporary_file_and_says_so(tmp_path):
    out = tmp_path/'run'
    def disk_full_at_step_2(info):   # the temporary file of the next checkpoint is /dev/full: writes fail with ENOSPC
        if info['global_step'] == 2: (out/f'.checkpoint.pt.tmp{os.getpid()}').symlink_to('/dev/full')
    e = failure(lambda: train(TrainConfig(**TINY, out_dir=str(out)), on_step=disk_full_at_step_2))
    is_run_folder_error(e, f'no space left on device while writing {out/"checkpoint.pt"}')
    assert isinstance(e.__cause__, OSError) and e.__cause__.errno == errno.ENOSPC, repr(e.__cause__)
    assert not list(out.glob('.*tmp*')), list(out.iterdir())
    s = train(TrainConfig(**TINY, out_dir=str(out)))          # space again: the same command runs to the end
    assert s['status'] == 'completed'

def test_stale_temporary_files_are_swept_on_start(tmp_path):
    out = partial_run(tmp_path/'run')
    stale = [out/'.checkpoint.pt.tmp999999', out/'.metrics.jsonl.tmp424242']
    for p in stale: p.write_bytes(b'\0' * 1000)
    train(TrainConfig(**TINY, out_dir=str(out)))
    assert not any(p.exists() for p in stale)

# 4. Damaged files: named, with what is wrong and what to do; a kept previous checkpoint is used instead.
@pytest.mark.parametrize('damage', ['truncated', 'random_bytes'])
def test_damaged_checkpoint_without_a_previous_one(tmp_path, damage):
    out = partial_run(tmp_path/'run')
    (out/'checkpoint.prev.pt').unlink(missing_ok=True)
    ck = out/'checkpoint.pt'
    ck.write_bytes(ck.read_bytes()[:len(ck.read_bytes())//2] if damage == 'truncated' else os.urandom(5000))
    e = failure(lambda: train(TrainConfig(**TINY, out_dir=str(out))))
    is_run_folder_error(e, str(ck), 'damaged', 'Delete')

def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path):
    ref = train(TrainConfig(**TINY, out_dir=str(tmp_path/'ref')))
    out = partial_run(tmp_path/'run')
    assert (out/'checkpoint.prev.pt').exists(), sorted(p.name for p in out.iterdir())
    ck = out/'checkpoint.pt'; ck.write_bytes(ck.read_bytes()[:1000])
    with pytest.warns(UserWarning, match='checkpoint.prev.pt'):
        s = train(TrainConfig(**TINY, out_dir=str(out)))
    assert s['resumed_from'] == dict(epoch=1, step=0), s['resumed_from']   # the checkpoint before the damaged one
    a, b = final_weights(tmp_path/'ref'), final_weights(out)
    for k in a: assert torch.equal(a[k], b[k]), k
    assert s['final_train_loss'] == ref['final_train_loss']

@pytest.mark.parametrize('name', ['summary.json', 'config.json'])
def test_invalid_json_is_named(tmp_path, name):
    out = tmp_path/'run'
    train(TrainConfig(**TINY, out_dir=str(out)))
    (out/name).write_text('{"status": "compl')
    e = failure(lambda: train(TrainConfig(**TINY, out_dir=str(out))))
    is_run_folder_error(e, str(out/name), 'not valid JSON', 'Delete')
    (out/name).unlink()                                  # what the message says to do
    assert train(TrainConfig(**TINY, out_dir=str(out)))['status'] == 'completed'

def test_sweep_reports_a_damaged_cell_as_failed_and_goes_on(tmp_path):
    from diffgrad_nb.grids import table3_grid, SMOKE, cell_dir
    from diffgrad_nb.sweep import sweep
    from diffgrad_nb.report import write_report
    cells = table3_grid(batch_sizes=(32,), **SMOKE)[:3]
    root = tmp_path/'runs'
    sweep(cells[:2], root, log=lambda s: None)
    (cell_dir(cells[0], root)/'summary.json').write_text('garbage')
    for dry in (True, False):
        lines = []
        rows = sweep(cells, root, dry_run=dry, log=lines.append)
        assert rows[0]['status'] == 'failed' and 'summary.json' in rows[0]['error'] and 'not valid JSON' in rows[0]['error'], rows[0]
        assert [r['status'] for r in rows[1:]] == (['done', 'new'] if dry else ['done', 'completed']), rows
        assert lines[0].startswith('failed') and 'summary.json' in lines[0], lines
    text = write_report({'table3': cells}, root, tmp_path/'report').read_text()
    assert '1 failed' in text and 'summary.json' in text and 'not valid JSON' in text, text

def test_sweep_command_exits_nonzero_after_a_failed_cell_but_runs_the_rest(tmp_path):
    args = [sys.executable, '-m', 'diffgrad_nb.sweep', '--grid', 'table3', '--preset', 'smoke', '--batch-sizes', '32',
            '--root', str(tmp_path/'runs')]
    bad = tmp_path/'runs'/'cifar'/'diffgrad_small_relu_cifar10_b32_lr0.001_s0'
    bad.mkdir(parents=True); (bad/'checkpoint.pt').write_bytes(os.urandom(3000))
    r = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and r.stdout.count('completed') == 3 and 'failed' in r.stdout, r.stdout + r.stderr[-3000:]
    assert 'Traceback' not in r.stderr and str(bad/'checkpoint.pt') in r.stdout, r.stderr[-3000:]

# 5. Start-up errors: refused before anything is written, so the corrected command runs.
def test_out_dir_that_is_a_file(tmp_path):
    f = tmp_path/'file'; f.write_text('x')
    e = failure(lambda: train(TrainConfig(**TINY, out_dir=str(f))))
    assert isinstance(e, ConfigError) and 'is a file' in str(e), e
    assert f.read_text() == 'x'

def test_read_only_out_dir(tmp_path, monkeypatch):
    "as root a chmod does not stop writes, so the read-only file system is simulated: mkdir fails with EROFS"
    def read_only(self, *a, **k): raise OSError(errno.EROFS, 'Read-only file system', str(self))
    monkeypatch.setattr(Path, 'mkdir', read_only)
    out = tmp_path/'ro'/'run'
    e = failure(lambda: train(TrainConfig(**TINY, out_dir=str(out))))
    assert isinstance(e, ConfigError) and 'Read-only file system' in str(e) and str(out) in str(e), repr(e)

def test_bad_seed_is_a_config_error():
    e = failure(lambda: TrainConfig(**{**TINY, 'seed': -1}))
    assert isinstance(e, ConfigError) and e.name == 'seed', repr(e)

def test_failure_before_the_first_step_leaves_no_config_json(tmp_path):
    out = tmp_path/'run'
    e = failure(lambda: train(TrainConfig(**{**TINY, 'dataset': 'cifar10', 'data_root': str(tmp_path/'no_data')}, out_dir=str(out))))
    assert isinstance(e, FileNotFoundError), repr(e)
    assert not (out/'config.json').exists()
    assert train(TrainConfig(**TINY, out_dir=str(out)))['status'] == 'completed'   # the corrected command is not refused

# 6. Smaller faults.
def test_finished_run_without_metrics_jsonl_is_rebuilt(tmp_path):
    out = tmp_path/'run'
    train(TrainConfig(**TINY, out_dir=str(out)))
    before = (out/'metrics.jsonl').read_text(); (out/'metrics.jsonl').unlink()
    train(TrainConfig(**TINY, out_dir=str(out)))
    assert (out/'metrics.jsonl').read_text() == before

def test_report_of_a_finished_run_without_metrics_jsonl(tmp_path):
    from diffgrad_nb.grids import Cell, cell_dir
    from diffgrad_nb.report import load_results
    cell = Cell('g', 'diffgrad', 'fake', TrainConfig(**TINY))
    out = cell_dir(cell, tmp_path)
    train(TrainConfig(**TINY, out_dir=str(out))); (out/'metrics.jsonl').unlink()
    r, = load_results([cell], tmp_path)
    assert r['status'] == 'done' and r['epochs_done'] == 2 and 'metrics.jsonl' in r['note'], r

def test_two_processes_on_one_folder(tmp_path):
    "a live process (here: this test's parent) holds the folder's lock: the second run is refused, the folder untouched"
    out = tmp_path/'run'; out.mkdir()
    (out/'lock').write_text(f'{socket.gethostname()} {os.getppid()}')
    e = failure(lambda: train(TrainConfig(**TINY, out_dir=str(out))))
    is_run_folder_error(e, str(out), 'another process', str(os.getppid()))
    assert sorted(p.name for p in out.iterdir()) == ['lock']
    (out/'lock').write_text(f'{socket.gethostname()} 999999999')      # its process died: taken over
    assert train(TrainConfig(**TINY, out_dir=str(out)))['status'] == 'completed' and not (out/'lock').exists()

def test_set_lr_says_what_happens_to_adadelta(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'diffgrad_nb.sweep', '--grid', 'table1', '--preset', 'smoke', '--dry-run',
                        '--set', 'lr=0.01', '--root', str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'adadelta' in r.stderr and 'adadelta_lr' in r.stderr, r.stderr

def test_data_root_with_fake_data_warns(tmp_path):
    with pytest.warns(UserWarning, match='data_root.*fake'):
        train(TrainConfig(**{**TINY, 'epochs': 1, 'data_root': str(tmp_path/'data')}, out_dir=str(tmp_path/'run')))

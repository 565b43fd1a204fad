"""benchmarks/gpu_check.sh, the one prepared script for a borrowed GPU, in its CPU dry-run mode: every stage runs the
same code on the CPU (small model, few steps), so a GPU session cannot be lost to a broken script. 1-3 minutes on the
shared 2-core dev machine."""
import json, os, subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ['env', 'train_gpu_cell', 'host_syncs', 'loop_speed', 'fused_step']

def test_gpu_check_cpu_dry_run(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'OUT': str(tmp_path)}
    env.pop('WORLD_SIZE', None)
    r = subprocess.run(['bash', str(ROOT/'benchmarks'/'gpu_check.sh'), '--cpu'], env=env, capture_output=True, text=True,
                       timeout=900, cwd=tmp_path)
    summary = (tmp_path/'summary.txt').read_text().splitlines()
    assert [l.split(':')[0] for l in summary] == STAGES, summary
    assert r.returncode == 0 and all(': ok,' in l for l in summary), '\n'.join(summary) + r.stdout[-3000:] + r.stderr[-2000:]
    assert json.loads((tmp_path/'env.json').read_text())['mode'] == 'cpu'
    assert '"deterministic_resume": "bit-identical"' in (tmp_path/'train_gpu_cell.log').read_text()
    assert 'host syncs per training step on cpu: 0.20' in (tmp_path/'host_syncs.log').read_text()
    rows = json.loads((tmp_path/'loop_speed.json').read_text())['rows']
    assert [x['batch_size'] for x in rows] == [32, 128] and all(x['loop_images_per_s'] > 0 for x in rows), rows
    fused = json.loads((tmp_path/'fused_step.json').read_text())
    assert fused['worst_relative_difference'] < 1e-4 and fused['step_speed']['exit'] == 0, fused
    k = fused['kernels']   # the CUDA code inductor writes for the compiled step (fake CUDA tensors in the dry run)
    assert 1 <= k['triton_launches'] <= 3 and k['host_work'] == [] and k['extern_calls'] == [], k

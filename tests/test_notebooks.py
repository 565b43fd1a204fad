"""Every notebook in nbs/ is one pytest case, run by `nbdev_test` in its own process, so pytest's
closing line counts the notebooks (nbdev_test itself prints no pass/fail count)."""
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))
NBDEV_TEST = Path(sys.executable).parent/'nbdev_test'

def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 3, f'expected the project notebooks in {ROOT/"nbs"}, found {NOTEBOOKS}'

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook(nb):
    env = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}
    res = subprocess.run([str(NBDEV_TEST), '--path', str(nb), '--do_print'], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, f'{nb.name} failed under nbdev_test:\n{res.stdout[-6000:]}\n{res.stderr[-6000:]}'

"""The mutation check of scripts/mutants.py in CI: its table stays in step with the code (seconds) and no mutant survives (minutes).

Every mutant of scripts/mutants.py must find each of its target texts exactly once in the notebook and in the exported
module: when code moves, this fails and names the row to update, instead of the mutant silently testing nothing."""
import importlib.util, shutil
from pathlib import Path
import nbformat, pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('mutants', ROOT/'scripts'/'mutants.py')
mutants = importlib.util.module_from_spec(spec); spec.loader.exec_module(mutants)

def test_every_target_found_once():
    assert mutants.check_targets(mutants.MUTANTS) == []

def test_the_fifteen_kinds_of_issue_18_are_listed():
    assert len(mutants.MUTANTS) >= 15 and len({m.name for m in mutants.MUTANTS}) == len(mutants.MUTANTS)

def _copy(tmp_path, nb):
    shutil.copytree(ROOT/'diffgrad_nb', tmp_path/'diffgrad_nb')
    (tmp_path/nb).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT/nb, tmp_path/nb)

def _package(root):
    return ''.join(p.read_text() for p in sorted((root/'diffgrad_nb').glob('*.py')))

def test_a_mutant_edits_notebook_and_module(tmp_path):
    m = next(m for m in mutants.MUTANTS if m.name == 'kernel-maximize-ignored')
    nb, old, new = m.edits[0]
    _copy(tmp_path, nb)
    assert mutants.apply(m, tmp_path) == []
    cells = [c.source for c in nbformat.read(tmp_path/nb, as_version=4).cells if c.cell_type == 'code']
    assert any(new in c for c in cells) and not any(old in c for c in cells)
    assert new in _package(tmp_path) and old not in _package(tmp_path)

@pytest.mark.parametrize('old', ['text that is not in the notebook', 'def '])   # absent; present many times
def test_a_target_not_found_exactly_once_is_an_error(tmp_path, old):
    nb = 'nbs/01_optim.ipynb'
    _copy(tmp_path, nb)
    before = _package(tmp_path), (tmp_path/nb).read_text()
    problems = mutants.apply(mutants.Mutant('moved', 'code moved', [(nb, old, 'x')]), tmp_path)
    assert len(problems) == 1 and 'must be 1 and 1' in problems[0]
    assert (_package(tmp_path), (tmp_path/nb).read_text()) == before        # nothing applied

def test_no_mutant_survives():
    "The full mutation check (one mutant at a time: pytest -n 2 already keeps both CI cores busy). Minutes, not seconds."
    assert mutants.main(['--no-baseline', '--jobs', '1']) == 0

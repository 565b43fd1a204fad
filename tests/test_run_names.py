"""One naming rule for run folders (`TrainConfig.run_name`, which `Cell.name` uses): it reproduces the name of every
committed run folder under study/, and each folder's saved config is the config of the cell that names it."""
import json
from pathlib import Path
from diffgrad_nb.grids import STUDY, fmnist_grid, fmnist_long_grid, fmnist_full_grid, cell_dir
from diffgrad_nb.scale import all_cells

ROOT = Path(__file__).resolve().parents[1]
STUDY_DIR = ROOT/'study'
SETTINGS = ('out_dir', 'device', 'progress')   # where and how a run ran, not what it computed

def committed_cells():
    "the cells of every committed grid: 07's study at its three budgets, 08's lr and loss-scale grids"
    return fmnist_grid(**STUDY) + fmnist_long_grid() + fmnist_full_grid() + all_cells()

def test_every_committed_run_folder_is_named_by_a_cell():
    folders = {p.parent for p in STUDY_DIR.glob('*/*/summary.json')}
    assert len(folders) >= 42 + 9 + 9 + 27 + 12, len(folders)
    named = {cell_dir(c, STUDY_DIR) for c in committed_cells()}
    assert folders == named, (sorted(p.relative_to(STUDY_DIR) for p in folders - named),
                              sorted(p.relative_to(STUDY_DIR) for p in named - folders))

def test_each_folder_holds_the_run_of_its_cell():
    for c in committed_cells():
        saved = json.loads((cell_dir(c, STUDY_DIR)/'config.json').read_text())
        wanted = {k: v for k, v in vars(c.config).items() if k not in SETTINGS}
        saved = {k: v for k, v in saved.items() if k not in SETTINGS}
        saved.setdefault('loss_scale', 1.0)   # the study's first runs predate the field (its default)
        assert saved == wanted, (c.name, {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v})

def test_loss_scale_folders_keep_their_suffix():
    scaled = sorted(p.name for p in (STUDY_DIR/'fmnist_scale').iterdir() if p.is_dir())
    assert scaled and all(n.rsplit('_', 1)[-1] in ('ls100', 'ls1000', 'ls10000') for n in scaled), scaled

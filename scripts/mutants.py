"""Mutation check of the optimizer's tests: plant known bugs one at a time, run the notebooks that test them, fail if
any bug survives (issue 18).

    .venv/bin/python scripts/mutants.py              # every mutant, 2 at a time; exit 1 if one survives or moved
    .venv/bin/python scripts/mutants.py --check      # only: every target is found (seconds; tests/test_mutants.py)
    .venv/bin/python scripts/mutants.py --only sign-eq19 kernel-amsgrad-max-dropped --jobs 1

CI runs it through tests/test_mutants.py (no baseline: the notebooks' own CI tests are that; one mutant at a time, since
pytest -n 2 already keeps both cores busy). Measured on the 2-core development machine, shared with other jobs (load
average about 11): 22 mutants plus the baseline, 2 at a time, 700 s wall and 3.8 CPU-minutes; the CI form
(tests/test_mutants.py, one at a time, no baseline) 346 s wall and 2.7 CPU-minutes, which fits CI's budget (a full CI
run is about 5 minutes on 2 cores).

Each mutant is a small, plausible bug, written down as text edits in MUTANTS below: (file, old text, new text), plus
why it is a bug. It is applied, as a real bug would be, to the notebook cell AND to the module nbdev exported from it,
in a temporary copy of the repository (never in the working tree); then the notebooks in RUNS for the mutated files are
run with `nbdev_test`, cheapest first, until one fails. A mutant is *killed* when a notebook fails (or times out),
*survives* when all pass. An edit whose old text is not found exactly once, in the notebook and in the module, is an
error, never a silent pass: the code moved, so update its row. (The module is found by its text, so a
function moving to another module needs no change here.) An unmutated copy is run first (the baseline) and must
pass, or every kill would mean nothing. The fused kernel is rebuilt for each mutant that changes it, into a temporary
cache, not ~/.cache/diffgrad_nb.

Why not a mutation-testing library: mutmut (3.x), cosmic-ray (8.x) and mutatest (3.1, last released 2022) generate mutants from operators
applied to the abstract syntax tree of Python modules (a `+` made `-`, a constant changed...) and re-run pytest. Here
(1) the source is the notebook and the module is generated from it: a library that mutates diffgrad_nb/*.py leaves the
notebook's own copy of the function, which its tests call, unchanged; (2) a good share of the optimizer is C source held
in a Python string (the fused kernel), which those tools cannot see; (3) the point of this check is a fixed list of
known, plausible bugs (a wrong beta, a sign convention misread consistently everywhere) that must stay killed, not a
random sample of operator mutants. A table of text edits is the smallest thing that does all three.
"""
import argparse, concurrent.futures as cf, os, re, shutil, subprocess, sys, tempfile, time
from dataclasses import dataclass
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NBDEV_TEST = Path(sys.executable).parent/'nbdev_test'
COPY = ['settings.ini', 'pyproject.toml', 'nbs', 'diffgrad_nb']   # what a notebook test needs

# mutated notebook -> the notebooks whose tests run, cheapest (or most likely to kill) first
RUNS = {'nbs/00_friction.ipynb': ['00_friction', '01c_properties', '01_optim', '01a_fused', '01b_functional'],
        'nbs/01_optim.ipynb': ['01c_properties', '01_optim', '01a_fused', '01b_functional'],
        'nbs/01b_functional.ipynb': ['01c_properties', '01_optim', '01a_fused', '01b_functional'],
        'nbs/01a_fused.ipynb': ['01c_properties', '01a_fused', '01b_functional']}

@dataclass
class Mutant:
    name: str
    why: str        # the bug, in words
    edits: list     # (notebook, old, new): old must occur exactly once in the notebook's code and in the package

F, O, B, K = 'nbs/00_friction.ipynb', 'nbs/01_optim.ipynb', 'nbs/01b_functional.ipynb', 'nbs/01a_fused.ipynb'
MUTANTS = [
    Mutant('loop-bias-correction-beta2', "wrong beta in the first moment's bias correction (per-tensor path)",
           [(B, "bc1, bc2_sqrt = _one_minus_pow(beta1, t),", "bc1, bc2_sqrt = _one_minus_pow(beta2, t),")]),
    Mutant('kernel-bias-correction-beta2', "wrong beta in the first moment's bias correction (fused kernel)",
           [(K, "ss[2 * t] = -lr * sbc2 / (1 - pow(h[1], tt));", "ss[2 * t] = -lr * sbc2 / (1 - pow(h[2], tt));")]),
    Mutant('foreach-eps-inside-sqrt', "eps added to v under the square root instead of to sqrt(v_hat) (foreach path)",
           [(B, "denom = torch._foreach_sqrt(second_moments)\n", "denom = torch._foreach_sqrt(torch._foreach_add(second_moments, eps))\n"),
            (B, "torch._foreach_add_(denom, eps)\n", "\n")]),
    Mutant('kernel-prev-grad-not-updated', "g_{t-1} never updated: prev_grad keeps its first value (fused kernel)",
           [(K, "d[i] = gi;", "d[i] = d[i];")]),
    Mutant('loop-prev-grad-not-updated', "g_{t-1} left holding dg instead of g_t (per-tensor path)",
           [(B, "        prev.copy_(g)\n", "\n")]),
    Mutant('friction-call-signed', "a friction record applied to dg where its form says |dg| (reference, per-tensor path)",
           [(F, "x = dg.abs() if self.abs_dg else dg", "x = dg")]),
    Mutant('dfc-record-signed', "the paper's DFC recorded without the absolute value (Eq. 18 misread, consistently everywhere)",
           [(F, 'dfc = Friction("dfc")', 'dfc = Friction("dfc", abs_dg=False)')]),
    Mutant('foreach-abs-swapped', "the foreach path takes |dg| where the record says dg and the other way round",
           [(B, "if friction.abs_dg: torch._foreach_abs_(prev_grads)", "if not friction.abs_dg: torch._foreach_abs_(prev_grads)")]),
    Mutant('kernel-dfc1-dfc-abs-swapped', "the kernel takes |dg| for DFC1 and dg for DFC (friction kinds swapped)",
           [(K, "useabs = fric == 1;", "useabs = fric == 2;")]),
    Mutant('kernel-maximize-ignored', "maximize=True minimises anyway (fused kernel)",
           [(K, "const T sgn = (flags & MAXIMIZE) ? -1 : 1;", "const T sgn = 1;")]),
    Mutant('kernel-amsgrad-max-dropped', "AMSGrad keeps max(v_max, v) but divides by v (fused kernel)",
           [(K, "if (AMS) { vi = MAXV(vm[i], vi); vm[i] = vi; }", "if (AMS) { vm[i] = MAXV(vm[i], vi); }")]),
    Mutant('foreach-double-step', "the step count incremented twice per step (foreach path)",
           [(B, "        torch._foreach_add_(device_steps, 1)\n", "        torch._foreach_add_(device_steps, 1); torch._foreach_add_(device_steps, 1)\n")]),
    Mutant('kernel-weight-decay-outside-dg', "coupled weight decay enters m and v but not dg and g_{t-1} (Eq. 3 vs 19)",
           [(K, "T dg = d[i] - gi;", "T dg = d[i] - (gi - wdc * pi);"), (K, "d[i] = gi;", "d[i] = gi - wdc * pi;")]),
    Mutant('dfc2-constant', "DFC2's offset -4 changed to -4.5 in its record (every path follows it)",
           [(F, 'Friction("dfc2", scale=9.0, offset=-4.0, slope=0.5)', 'Friction("dfc2", scale=9.0, offset=-4.5, slope=0.5)')]),
    Mutant('kernel-friction-slope', "the kernel's slope c of an element-wise friction squared (wrong for DFC2's 1/2)",
           [(K, "coefs = torch.tensor([friction.slope, 0.0], dtype=torch.float64)",
                "coefs = torch.tensor([friction.slope ** 2, 0.0], dtype=torch.float64)")]),
    Mutant('foreach-stats-shift-sign', "DFC3-5 on the foreach path: sigmoid(c x + mu) instead of sigmoid(c x - mu)",
           [(B, "d.mul_(c).sub_(mu)", "d.mul_(c).add_(mu)")]),
    Mutant('fused-low-precision-not-written-back', "bf16/fp16 parameters on the fused path: the float32 result never copied back",
           [(B, "if dtype in _LOW_PRECISION: torch._foreach_copy_(dtype_params, kernel_params)", "pass")]),
    Mutant('low-precision-restore-skipped', "load_state_dict lets torch cast bf16/fp16 params' float32 state to their dtype",
           [(O, "if p.dtype in _LOW_PRECISION and i in loaded['state']:", "if False:")]),
    Mutant('reference-t-minus-1', "the reference's bias correction uses t-1 (divides by zero at the first step)",
           [(O, "m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)",
                "m_hat, v_hat = m / (1 - beta1 ** (t - 1)), v / (1 - beta2 ** (t - 1))")]),
    Mutant('reference-t-plus-1', "the reference's bias correction uses t+1",
           [(O, "m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)",
                "m_hat, v_hat = m / (1 - beta1 ** (t + 1)), v / (1 - beta2 ** (t + 1))")]),
    Mutant('sign-eq19', "Eq. 19 read as dg = g_t - g_{t-1}, consistently in the reference and every path",
           [(O, "dg = state['prev_grad'] - g", "dg = g - state['prev_grad']"),
            (B, "prev.sub_(g)  ", "prev.sub_(g).neg_()  "),
            (B, "torch._foreach_sub_(prev_grads, grads)  ", "torch._foreach_sub_(prev_grads, grads); torch._foreach_neg_(prev_grads)  "),
            (K, "T dg = d[i] - gi;", "T dg = gi - d[i];")]),
    Mutant('kernel-reads-t-early', "the kernel computes the bias corrections from the step count before incrementing it",
           [(K, "double tt = *step, sbc2", "double tt = *step - 1, sbc2")]),
]

def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == 'code']

def apply(mutant: Mutant, root: Path) -> list:
    "Apply `mutant` to the copy at `root`; returns the problems (a target not found exactly once), empty when applied."
    problems, notebooks, changed = [], {}, set()
    modules = {p: p.read_text() for p in sorted((root/'diffgrad_nb').glob('*.py'))}   # the module is wherever nbdev put it
    for nb_path, old, new in mutant.edits:
        nb = notebooks.setdefault(nb_path, nbformat.read(root/nb_path, as_version=4))
        hits = [c for c in _code_cells(nb) if old in c.source]
        in_modules = {p: t.count(old) for p, t in modules.items() if old in t}
        n_nb, n_mod = sum(c.source.count(old) for c in hits), sum(in_modules.values())
        if n_nb != 1 or n_mod != 1:
            problems.append(f"{mutant.name}: {old!r} found {n_nb}x in {nb_path} and {n_mod}x in diffgrad_nb/ (must be 1 and 1)")
            continue
        hits[0].source = hits[0].source.replace(old, new)
        (mod,) = in_modules
        modules[mod] = modules[mod].replace(old, new); changed.add(mod)
    if problems: return problems
    for mod in changed:
        try: compile(modules[mod], str(mod), 'exec')
        except SyntaxError as e: return [f"{mutant.name}: the mutated {mod.name} does not compile ({e})"]
    for nb_path, nb in notebooks.items(): nbformat.write(nb, root/nb_path)
    for mod in changed: mod.write_text(modules[mod])
    return []

def _copy_repo(dest: Path):
    for name in COPY:
        src = ROOT/name
        if src.is_dir(): shutil.copytree(src, dest/name, ignore=shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints'))
        else: shutil.copy2(src, dest/name)

def run_notebook(root: Path, nb: str, cache: Path, timeout: float):
    "(passed, seconds, last lines of output) of nbdev_test on one notebook of the copy at `root`."
    env = {**os.environ, 'PYTHONPATH': str(root), 'OMP_NUM_THREADS': '1', 'DIFFGRAD_NB_CACHE': str(cache),
           'PYTHONDONTWRITEBYTECODE': '1'}
    t0 = time.time()
    try:
        res = subprocess.run([str(NBDEV_TEST), '--path', f'nbs/{nb}.ipynb'], cwd=root, env=env,
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, time.time() - t0, f'timed out after {timeout:.0f} s'
    lines = [l.strip() for l in (res.stdout + res.stderr).splitlines() if l.strip() and 'Warning' not in l]
    errors = [l for l in lines if re.match(r'^[\w.]*(Error|Exception|Interrupt)\b', l) or 'Segmentation' in l]
    return res.returncode == 0, time.time() - t0, (errors or lines or ['(no output)'])[-1][:300]

def run_mutant(mutant, cache: Path, timeout: float, without=()) -> dict:
    "Apply `mutant` to a fresh copy and run its notebooks (less `without`) until one fails."
    with tempfile.TemporaryDirectory(prefix=f'mutant-{mutant.name}-' if mutant else 'mutant-baseline-') as tmp:
        root = Path(tmp)
        _copy_repo(root)
        if mutant is None: notebooks = sorted({n for runs in RUNS.values() for n in runs})
        else:
            problems = apply(mutant, root)
            if problems: return dict(name=mutant.name, status='TARGET NOT FOUND', detail='; '.join(problems), seconds=0.0)
            notebooks = list(dict.fromkeys(n for nb, _, _ in mutant.edits for n in RUNS[nb]))
        notebooks = [n for n in notebooks if n not in without]
        total = 0.0
        for nb in notebooks:
            passed, secs, tail = run_notebook(root, nb, cache, timeout)
            total += secs
            if not passed:
                if mutant is None: return dict(name='baseline', status='BASELINE FAILS', detail=f'{nb}: {tail}', seconds=total)
                return dict(name=mutant.name, status='killed', detail=f'by {nb}: {tail}', seconds=total)
        if mutant is None: return dict(name='baseline', status='passed', detail='ran ' + ', '.join(notebooks), seconds=total)
        return dict(name=mutant.name, status='SURVIVED', detail='ran ' + ', '.join(notebooks), seconds=total)

def check_targets(mutants) -> list:
    "Problems with the mutant table on the current code (targets not found exactly once), without running tests."
    problems = []
    with tempfile.TemporaryDirectory(prefix='mutant-check-') as tmp:
        for m in mutants:
            root = Path(tmp)/m.name
            root.mkdir()
            shutil.copytree(ROOT/'diffgrad_nb', root/'diffgrad_nb', ignore=shutil.ignore_patterns('__pycache__'))
            for nb in {e[0] for e in m.edits}:
                (root/nb).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT/nb, root/nb)
            problems += apply(m, root)
    return problems

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--only', nargs='*', help='names of the mutants to run (default: all)')
    ap.add_argument('--jobs', type=int, default=2, help='mutants run at the same time (default 2)')
    ap.add_argument('--timeout', type=float, default=900, help='seconds per notebook run; a timeout counts as a kill')
    ap.add_argument('--check', action='store_true', help='only check that every target is found, run no tests')
    ap.add_argument('--no-baseline', action='store_true', help='skip the run of the unmutated copy')
    ap.add_argument('--without', nargs='*', default=[], help='notebooks not to run (e.g. 01c_properties: what do the others catch?)')
    args = ap.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    unknown = set(args.only or []) - {m.name for m in MUTANTS}
    if unknown: ap.error(f"unknown mutants: {', '.join(sorted(unknown))} (see MUTANTS)")
    problems = check_targets(mutants)
    for p in problems: print('TARGET NOT FOUND', p)
    if args.check:
        print(f"{len(mutants) - len({p.split(':')[0] for p in problems})}/{len(mutants)} mutants apply cleanly")
        return 1 if problems else 0
    t0 = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix='mutant-cache-') as cache, cf.ThreadPoolExecutor(max(1, min(args.jobs, 2))) as pool:
        jobs = ([] if args.no_baseline else [None]) + mutants
        futures = [pool.submit(run_mutant, m, Path(cache), args.timeout, args.without) for m in jobs]
        for fut in cf.as_completed(futures):
            r = fut.result(); results.append(r)
            print(f"{r['status']:>16}  {r['name']:<32} {r['seconds']:6.0f} s  {r['detail']}", flush=True)
    mutant_results = [r for r in results if r['name'] != 'baseline']
    killed = sum(r['status'] == 'killed' for r in mutant_results)
    bad = [r for r in results if r['status'] not in ('killed', 'passed')]
    print(f"\n{killed}/{len(mutant_results)} mutants killed in {time.time() - t0:.0f} s wall "
          f"({'jobs=%d' % args.jobs}, {os.cpu_count()} CPUs); "
          + ('all killed' if not bad else 'FAILED: ' + ', '.join(f"{r['name']} ({r['status']})" for r in bad)))
    return 1 if bad else 0

if __name__ == '__main__':
    sys.exit(main())

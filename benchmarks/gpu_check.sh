#!/usr/bin/env bash
# The one prepared script for a borrowed GPU (issue 17): every check that needs CUDA, each stage under its own timeout,
# no stage hiding the next (a failed or timed-out stage is recorded and the next one runs), all output under $OUT.
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh          # on the GPU machine, from the repository root or anywhere
#   OUT=/tmp/x bash benchmarks/gpu_check.sh --cpu          # the CPU dry run of every stage (tests/test_gpu_check.py, CI)
#
# Stages (expected duration on one H200 / limit; the CPU dry run takes about a minute on 2 cores in all):
#   1 env              5 s /  30 s  GPU, driver, Python, torch, CUDA, cuDNN, Triton versions; the package imports
#   2 train_gpu_cell  90 s / 210 s  nbs/06_train.ipynb's `gpu` cell, alone in a fresh process: deterministic CUDA
#                                    crash/resume bit-identity, bf16 + channels_last, torch.compile, ResNet50 images/s
#   3 host_syncs      20 s /  60 s  CUDA syncs per training step (torch.cuda.set_sync_debug_mode): tests/test_train_syncs.py
#   4 loop_speed      60 s / 150 s  the real training loop's steady-state images/s (2nd epoch, after cuDNN autotuning)
#                                    at batch 32 and 128 on CIFAR-shaped fake data, beside measure_throughput's
#   5 fused_step      90 s / 140 s  DiffGrad(fused=True) on CUDA (torch.compile): the Triton kernels of one step
#                                    (run_and_get_code, 161 tensors), parity with the CPU for-loop path over 10 steps of
#                                    the ResNet50 shapes with a scheduled tensor lr, no host sync in the last 7
#                                    (set_sync_debug_mode "error"), the CUDA kernels and copies of one steady step
#                                    (torch.profiler), then benchmarks/step_speed.py against Adam(fused=True)
# About 4.5 minutes expected, 10 minutes at most. Results: $OUT/summary.txt (one line per stage: status, seconds),
# $OUT/<stage>.log (its output) and $OUT/<stage>.json where the stage measures something.
#
# Python: $PYTHON, else python3 (the GPU image's own torch; the package is used from this checkout via PYTHONPATH).
# That machine reaches no package index: a missing small requirement (tqdm, say) is installed from the wheels in
# $WHEELS (default benchmarks/wheels; fetch them beforehand with `pip download --no-deps tqdm -d benchmarks/wheels`).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODE=gpu; [ "${1:-}" = "--cpu" ] && MODE=cpu
OUT="${OUT:-results/gpu_check}"; mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 GPU_CHECK_MODE="$MODE" GPU_CHECK_OUT="$OUT" MPLBACKEND=Agg
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"; elif [ "$MODE" = cpu ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
WHEELS="${WHEELS:-benchmarks/wheels}"
W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
: > "$OUT/summary.txt"

stage() {   # stage NAME LIMIT_S FILE: run FILE with $PY under a timeout; record status and seconds, never stop the script
  local name=$1 limit=$2 file=$3 t0=$SECONDS rc
  [ "$MODE" = cpu ] && limit=$((limit * 4))   # the dry run shares a slow CPU (importing torch alone can take 30 s)
  echo "== $name (limit ${limit} s)"
  timeout --kill-after=10 "$limit" "$PY" "$file" > "$OUT/$name.log" 2>&1; rc=$?
  local st=ok; [ $rc -ne 0 ] && st="FAILED (exit $rc)"; [ $rc -eq 124 ] || [ $rc -eq 137 ] && st="TIMED OUT after $limit s"
  echo "$name: $st, $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  tail -n 4 "$OUT/$name.log"
}

cat > "$W/env.py" <<'EOF'
import importlib, json, os, platform, subprocess, sys
missing = [m for m in ("numpy", "tqdm", "torchvision") if importlib.util.find_spec(m) is None]
wheels = os.environ.get("WHEELS", "benchmarks/wheels")
if missing and os.path.isdir(wheels):
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", wheels, *missing], check=False)
import torch
info = dict(mode=os.environ["GPU_CHECK_MODE"], host=platform.node(), python=sys.version.split()[0], torch=torch.__version__,
            cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), cuda_available=torch.cuda.is_available(),
            gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"), cublas_workspace_config=None)
try: import triton; info["triton"] = triton.__version__
except ImportError: info["triton"] = None
import diffgrad_nb.train   # the package from this checkout: fails here, clearly, if a requirement is missing
info["cublas_workspace_config"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
try: info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                        capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.TimeoutExpired): info["nvidia_smi"] = None
print(json.dumps(info, indent=1))
open(os.path.join(os.environ["GPU_CHECK_OUT"], "env.json"), "w").write(json.dumps(info, indent=1))
if info["mode"] == "gpu" and not info["cuda_available"]: raise SystemExit("no CUDA device visible")
EOF

cat > "$W/train_gpu_cell.py" <<'EOF'
import json, os, tempfile, torch
from pathlib import Path
nb = json.loads(Path("nbs/06_train.ipynb").read_text())
cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith("#| gpu")]
assert len(cells) == 1, f"expected one #| gpu cell in nbs/06_train.ipynb, found {len(cells)}"
src = cells[0]
if os.environ["GPU_CHECK_MODE"] == "cpu":   # the dry run: the same cell on the CPU, small, torch.compile a no-op
    src = src.replace('"cuda"', '"cpu"').replace('"resnet50"', '"small"').replace("batch_sizes=(128,), steps=20, warmup=10", "batch_sizes=(8,), steps=2, warmup=1")
    torch.compile = lambda model, **kw: model
from diffgrad_nb.train import *
exec(compile(src, "06_train.ipynb#gpu", "exec"))
EOF

cat > "$W/host_syncs.py" <<'EOF'
import os, runpy, sys
sys.argv = ["test_train_syncs.py", "cuda" if os.environ["GPU_CHECK_MODE"] == "gpu" else "cpu"]
runpy.run_path("tests/test_train_syncs.py", run_name="__main__")
EOF

cat > "$W/loop_speed.py" <<'EOF'
import json, os, tempfile
from pathlib import Path
import diffgrad_nb.train as T
from diffgrad_nb.data import make_fake_dataset
gpu = os.environ["GPU_CHECK_MODE"] == "gpu"
model, steps = ("resnet50", {32: 200, 128: 60}) if gpu else ("small", {32: 4, 128: 2})
data = make_fake_dataset(n_train=50000 if gpu else 1024, n_test=1000 if gpu else 64)   # CIFAR-shaped: 3x32x32, 10 classes
T.load_dataset = lambda name, root=None, download=False: data
rows = []
for bs, n in steps.items():
    cfg = T.TrainConfig(model=model, dataset="fake", epochs=2, batch_size=bs, max_steps_per_epoch=n, test_limit=bs,
                        eval_batch_size=bs, progress=False, device="cuda" if gpu else "cpu", out_dir=tempfile.mkdtemp())
    s = T.train(cfg)
    second = [json.loads(l) for l in (Path(cfg.out_dir)/"metrics.jsonl").read_text().splitlines()][1]
    ref = T.measure_throughput(model, batch_sizes=(bs,), steps=n // 2, warmup=10 if gpu else 1, device=cfg.device)[0]
    rows.append(dict(batch_size=bs, steps=n, loop_images_per_s=second["images_per_s"], measure_throughput_images_per_s=ref["images_per_s"],
                     loop_over_measure=second["images_per_s"] / ref["images_per_s"], status=s["status"], device=s["device"]))
    print(json.dumps(rows[-1]), flush=True)
Path(os.environ["GPU_CHECK_OUT"], "loop_speed.json").write_text(json.dumps(dict(model=model, rows=rows), indent=1))
EOF

cat > "$W/fused_step.py" <<'EOF'
import json, os, re, subprocess, sys, torch
sys.path.insert(0, "benchmarks")
from step_speed import resnet50_cifar_shapes
import cuda_codegen
from diffgrad_nb.optim import DiffGrad
gpu = os.environ["GPU_CHECK_MODE"] == "gpu"
dev = "cuda" if gpu else "cpu"
res = dict(device=dev)
def dump(): open(os.path.join(os.environ["GPU_CHECK_OUT"], "fused_step.json"), "w").write(json.dumps(res, indent=1))
# 1. the kernels of one compiled step: on the GPU from the code inductor really generates (161 tensors); in the dry run
#    from the CUDA code it writes for fake CUDA tensors (benchmarks/cuda_codegen.py; 10 tensors, to keep it short)
if gpu:
    from torch._inductor.utils import run_and_get_code
    ps = [torch.randn(s, device=dev, requires_grad=True) for s in resnet50_cifar_shapes()]
    for p in ps: p.grad = torch.randn_like(p)
    with torch._inductor.config.patch(force_disable_caches=True):
        _, code = run_and_get_code(DiffGrad(ps, fused=True, weight_decay=0.1).step)   # the flags of step 2: compiled once
    res["kernels"] = dict(cuda_codegen.count(code[0]), tensors=len(ps), source="run_and_get_code on this GPU")
else:
    wrapper, steps_on = cuda_codegen.generated_step(10)
    res["kernels"] = dict(cuda_codegen.count(wrapper), tensors=10, source="benchmarks/cuda_codegen.py (fake CUDA tensors)")
print(json.dumps(res["kernels"]), flush=True); dump()
# 2. parity: DiffGrad(fused=True) on the device against the CPU for-loop path, 10 steps of the ResNet50 shapes, with a
#    scheduler's tensor lr; steps 4-10 under torch.cuda.set_sync_debug_mode("error"), where a host sync raises
gen = torch.Generator().manual_seed(0)
ref = [torch.randn(s, generator=gen) for s in resnet50_cifar_shapes()]
fast = [p.clone().to(dev) for p in ref]
o_ref = DiffGrad(ref, foreach=False, weight_decay=0.1, lr=torch.tensor(1e-3))
o_fast = DiffGrad(fast, fused=True, weight_decay=0.1, lr=torch.tensor(1e-3))
scheds = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9) for o in (o_ref, o_fast)]
grads = [[torch.randn(a.shape, generator=gen) for a in ref] for _ in range(10)]
device_grads = [[g.to(dev) for g in gs] for gs in grads]
if gpu: torch.cuda.synchronize()
for k in range(10):
    for a, b, g, gd in zip(ref, fast, grads[k], device_grads[k]): a.grad = g; b.grad = gd
    o_ref.step()
    if gpu and k >= 3: torch.cuda.set_sync_debug_mode("error")
    o_fast.step()
    if gpu: torch.cuda.set_sync_debug_mode("default")
    for s in scheds: s.step()
worst = max(((a - b.cpu()).abs().max() / a.abs().max().clamp_min(1e-12)).item() for a, b in zip(ref, fast))
res.update(parity_steps=10, tensors=len(ref), worst_relative_difference=worst, steps_without_sync=7 if gpu else 0,
           step_counts_on=sorted({str(o_fast.state[p]["step"].device) for p in fast}))
print(json.dumps({k: v for k, v in res.items() if k != "kernels"}), flush=True); dump()
for a, b in zip(ref, fast): torch.testing.assert_close(b.cpu(), a, rtol=1e-5, atol=1e-6)
# 3. on the GPU, what one steady-state step launches and copies (torch.profiler); then the step time against
#    torch.optim.Adam(fused=True) (benchmarks/step_speed.py)
if gpu:
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        o_fast.step(); torch.cuda.synchronize()
    names = [e.name for e in prof.events() if e.device_type.name == "CUDA"]
    res["profiled_step"] = dict(cuda_events=len(names), memcpy=[n for n in names if "memcpy" in n.lower()],
                                kernels=sorted(set(names))[:40])
    print(json.dumps(res["profiled_step"]), flush=True); dump()
args = ["--device", "cuda", "--cases", "resnet50-cifar", "--repeats", "11"] if gpu else ["--repeats", "1", "--warmup", "0", "--cases", "resnet50-cifar"]
r = subprocess.run([sys.executable, "benchmarks/step_speed.py", *args], capture_output=True, text=True)
print(r.stdout[-4000:], r.stderr[-2000:], sep="\n")
res["step_speed"] = dict(args=args, exit=r.returncode, table=r.stdout[-4000:])
dump()
raise SystemExit(r.returncode)
EOF

export WHEELS
stage env 30 "$W/env.py"
stage train_gpu_cell 210 "$W/train_gpu_cell.py"
stage host_syncs 60 "$W/host_syncs.py"
stage loop_speed 150 "$W/loop_speed.py"
stage fused_step 140 "$W/fused_step.py"
echo "== summary ($OUT/summary.txt)"; cat "$OUT/summary.txt"
! grep -qv ': ok,' "$OUT/summary.txt"

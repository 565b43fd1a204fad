#!/usr/bin/env bash
# One prepared command for a GPU machine (a few minutes): ResNet50-CIFAR training throughput (images/s) at batch 32,
# 64 and 128 on synthetic data (bf16 autocast, channels_last; --compile adds torch.compile), then one epoch of real
# CIFAR-10 training (batch 128) if the data is present, else one epoch of CIFAR-sized fake data through the same loop
# (its wall time, not an accuracy). Results: one JSON file in $OUT (if set) or results/gpu_probe/.
#
#   bash benchmarks/gpu_probe.sh                       # on the GPU machine, from the repository root or anywhere
#   bash benchmarks/gpu_probe.sh --compile             # also time torch.compile'd steps (adds compile minutes)
#   bash benchmarks/gpu_probe.sh --device cpu --steps 2 --model small --batch-sizes 4,8 --epoch-batch-size 8 --epoch-steps 2
#                                                      # CPU smoke run of the same code (tests/test_train_cli.py)
# Python: $PYTHON if set; else .venv/bin/python if it can import the package; else python3 if it can (a GPU image's own
# torch, left as it is); else python3 if it has torch, after `pip install -e .` adds the missing requirements; else a
# new .venv with the package's requirements from PyPI at the versions CI pins (constraints.txt). The package itself is used from this checkout
# (PYTHONPATH), so nothing is installed where everything is already there.
# CIFAR-10: $DIFFGRAD_DATA or ./data holding cifar-10-batches-py/ or cifar-10-python.tar.gz (no download is tried).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
ok() { "$1" -c "import diffgrad_nb.train" 2>/dev/null; }
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"; ok "$PY" || "$PY" -m pip install -q -e .
elif [ -x .venv/bin/python ] && ok .venv/bin/python; then PY=.venv/bin/python
elif ok python3; then PY=python3
elif python3 -c "import torch" 2>/dev/null; then
  echo "== python3 has torch but lacks a requirement of diffgrad_nb: pip install -e ." >&2
  PY=python3; "$PY" -m pip install -q -e .
else
  echo "== no Python with torch here: creating .venv and installing the package (needs PyPI)" >&2
  python3 -m venv .venv && .venv/bin/python -m pip install -q -c constraints.txt -e .
  PY=.venv/bin/python
fi
echo "== python: $(command -v "$PY")" >&2

PYTHONUNBUFFERED=1 "$PY" - "$@" <<'PYEOF'
import argparse, json, os, platform, sys, tempfile, time
from pathlib import Path
import torch
from diffgrad_nb.train import TrainConfig, train, measure_throughput, resolve_device
from diffgrad_nb.data import default_data_root

p = argparse.ArgumentParser(prog="gpu_probe.sh", allow_abbrev=False)
p.add_argument("--device", default="auto", help="auto, cuda or cpu")
p.add_argument("--model", default="resnet50")
p.add_argument("--batch-sizes", default="32,64,128")
p.add_argument("--steps", type=int, default=30, help="timed steps per batch size")
p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10 on CUDA, 1 on the CPU)")
p.add_argument("--compile", action="store_true", help="also time torch.compile'd steps")
p.add_argument("--epoch-dataset", default="cifar10", help="data set of the one training epoch: cifar10 (CIFAR-sized fake data if absent), fake-cifar-sized, or any --dataset of diffgrad_train")
p.add_argument("--epoch-batch-size", type=int, default=128, help="batch size of the training epoch")
p.add_argument("--epoch-steps", type=int, default=None, help="cut the epoch to this many steps and the test set to as many batches (smoke runs)")
p.add_argument("--out", default=None, help="results folder (default: $OUT, else results/gpu_probe)")
a = p.parse_args(sys.argv[1:])
dev = resolve_device(a.device)
cuda = dev.type == "cuda"
warmup = a.warmup if a.warmup is not None else (10 if cuda else 1)
bss = [int(b) for b in a.batch_sizes.split(",")]
out = Path(a.out or os.environ.get("OUT") or "results/gpu_probe"); out.mkdir(parents=True, exist_ok=True)
res = dict(started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), host=platform.node(), python=sys.version.split()[0],
           torch=torch.__version__, cuda=torch.version.cuda, device=str(dev),
           gpu=torch.cuda.get_device_name(dev) if cuda else None, args=vars(a), throughput=[], epoch=None)
path = out/f"gpu_probe_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
def save(): path.write_text(json.dumps(res, indent=1)); print(f"== wrote {path}", file=sys.stderr)
if cuda: torch.backends.cudnn.benchmark = True
for compile in ([False, True] if a.compile else [False]):
    for bs in bss:
        try:
            r = measure_throughput(a.model, batch_sizes=(bs,), steps=a.steps, warmup=warmup, device=str(dev), compile=compile)[0]
        except Exception as e:   # e.g. out of memory or a compile failure: record it, go on
            r = dict(model=a.model, batch_size=bs, compile=compile, error=f"{type(e).__name__}: {e}"[:2000])
        print(json.dumps(r), flush=True); res["throughput"].append(r); save()

ds = a.epoch_dataset
if ds == "cifar10" and not any((default_data_root()/n).exists() for n in ("cifar-10-batches-py", "cifar-10-python.tar.gz")):
    res["epoch_skipped"] = (f"no CIFAR-10 under {default_data_root().resolve()} (set DIFFGRAD_DATA or put cifar-10-python.tar.gz "
                            "in ./data); timing one epoch of CIFAR-sized fake data instead")
    ds = "fake-cifar-sized"
if ds == "fake-cifar-sized":   # the same loop on 50,000/10,000 random 3x32x32 images: the wall time of an epoch, not an accuracy
    import diffgrad_nb.train as T
    from diffgrad_nb.data import make_fake_dataset
    T.load_dataset = lambda name, root=None, download=False: make_fake_dataset(n_train=50000, n_test=10000)
bs, steps = a.epoch_batch_size, a.epoch_steps
cfg = TrainConfig(model=a.model, dataset="fake" if ds == "fake-cifar-sized" else ds, epochs=1, batch_size=bs, device=str(dev),
                  max_steps_per_epoch=steps, test_limit=steps * bs if steps else None,
                  out_dir=tempfile.mkdtemp(prefix="gpu_probe_epoch_"), progress=False)
t0 = time.perf_counter()
try:
    s = train(cfg)
    row = [json.loads(l) for l in (Path(cfg.out_dir)/"metrics.jsonl").read_text().splitlines()]
    res["epoch"] = dict(dataset=ds, model=a.model, batch_size=cfg.batch_size, status=s["status"],
                        wall_s=time.perf_counter() - t0, metrics=row[0] if row else None)
except Exception as e:
    res["epoch"] = dict(dataset=ds, error=f"{type(e).__name__}: {e}"[:2000])
print(json.dumps(res["epoch"]), flush=True)
save()
PYEOF

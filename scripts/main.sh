#!/usr/bin/env bash
# The README's main command: set up the environment, then run the main job (diffgrad_main) and write results/.
#   bash scripts/main.sh                     # synthetic experiment + the quick Fashion-MNIST study (~10 min on 2 CPU cores)
#   bash scripts/main.sh --scale study       # the committed CPU study's scale (about an hour of 2 cores)
#   bash scripts/main.sh --scale paper --seeds 0 1 2 --download   # Tables I-III, ResNet50 on CIFAR: GPUs
#   bash scripts/main.sh --help              # every option (passed through to diffgrad_main)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# Fashion-MNIST comes from the Debian package dataset-fashion-mnist (no download by the package itself).
fm=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -e "$fm" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "main.sh: installing the Debian package dataset-fashion-mnist" >&2
    { apt-get install -y -q dataset-fashion-mnist || { apt-get update -q && apt-get install -y -q dataset-fashion-mnist; }; } >&2
fi
[ -e "$fm" ] || echo "main.sh: warning: $fm is missing: install dataset-fashion-mnist (apt-get) for the Fashion-MNIST study" >&2
exec .venv/bin/diffgrad_main "$@"

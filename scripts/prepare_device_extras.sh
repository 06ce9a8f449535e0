#!/usr/bin/env bash
# What the GPU jobs need beyond ../shared/device/prepare.sh (run it first, from the repository root):
#   * fox images_2 (the rounds and quality jobs train fox at half resolution; prepare.sh copies only images_4);
#   * wheels the GPU machine lacks: IPython (mediapy imports IPython.display, so nerfstudio.scripts.render and
#     bench_postfix_render.py fail without it) and constriction (the NiFi codec's rANS coder);
#   * in .device/kernels (installed by `gpu_session.sh cudnnconv` only, not by setup.sh): NVIDIA's cuDNN frontend
#     for bench_cudnn_conv.py (1.16.0: its graphs are C++ bindings over the libcudnn PyTorch ships, 2 MB; releases
#     from 1.2x on lower their graphs through cuda-python and need the CUDA driver even to validate one).
# Needs PyPI (this machine, not the GPU one). What a call carries and the tracked files must stay under the device
# tool's 64 MiB: the script prints both totals (all of .device but kernels/, for the jobs that need the fox data;
# wheels + setup + kernels, for the kernel benchmarks).
set -euo pipefail
[ -d .device/wheels ] || { echo "error: .device/wheels is missing; run bash ../shared/device/prepare.sh first" >&2; exit 2; }
shared=${SHARED_DATA:-../shared/data}
if [ ! -d .device/data/fox/images_2 ]; then
  cp -r "$shared/fox/images_2" .device/data/fox/
  chmod -R u+w .device/data/fox
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip download -q --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 \
  --dest "$tmp" constriction==0.5.0 ipython
mkdir -p .device/kernels
pip download -q --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
  --no-deps --dest .device/kernels nvidia-cudnn-frontend==1.16.0
# numpy, pygments and jedi/parso are left out: the GPU machine has numpy and pygments, and IPython runs without jedi
for name in constriction ipython ipython_pygments_lexers matplotlib_inline pexpect ptyprocess prompt_toolkit wcwidth \
    stack_data asttokens executing pure_eval traitlets; do
  cp "$tmp"/"$name"-*.whl .device/wheels/
done
tracked=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "carried with the fox data (.device without kernels/): $(mib $(( $(du -sb .device | cut -f1) - $(du -sb .device/kernels | cut -f1) + tracked ))) MiB of 64"
echo "carried by the kernel benchmarks (.device/wheels, setup.sh, sc, kernels): $(mib $(( $(du -scb .device/wheels .device/setup.sh .device/sc .device/kernels | tail -1 | cut -f1) + tracked ))) MiB of 64"

#!/usr/bin/env bash
# Venus on a GPU machine with no network: the default scenario and bench on the host's own driver.
#
# Here (a machine with the provisioned cache):
#   venus-repro carry pack carry.tar.xz          # runtime root without Mesa, guest, demos (~40 MB)
# There (root; python3 with pyyaml and tabulate; venus-repro installed, or its wheel
# and pexpect's on PYTHONPATH):
#   scripts/gpu-machine.sh carry.tar.xz OUT [FRAMES] [REPEAT]
# OUT gets results.tar.gz: run/ (the verdict run: result.json, fingerprint, frames,
# logs) and bench/ (bench.json, its runs); the verdict and bench tables go to stdout.
#
# The host driver is found as the Vulkan loader finds it; set VK_DRIVER_FILES (and
# __EGL_VENDOR_LIBRARY_FILENAMES) where the ICD files are not on the loader's path,
# as on machines with NVIDIA's driver under /usr/local/nvidia.
set -euo pipefail
carry=${1:?usage: gpu-machine.sh CARRY.tar.xz OUT [FRAMES] [REPEAT]}
out=${2:?usage: gpu-machine.sh CARRY.tar.xz OUT [FRAMES] [REPEAT]}
frames=${3:-1000}
repeat=${4:-5}
vr() { python3 -m venus_repro "$@"; }

for dir in /usr/local/nvidia/share; do
  if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$dir/vulkan/icd.d/nvidia_icd.json" ]; then
    export VK_DRIVER_FILES="$dir/vulkan/icd.d/nvidia_icd.json"
  fi
  if [ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$dir/glvnd/egl_vendor.d/10_nvidia.json" ]; then
    export __EGL_VENDOR_LIBRARY_FILENAMES="$dir/glvnd/egl_vendor.d/10_nvidia.json"
  fi
done

work=$(mktemp -d /tmp/venus-carry.XXXXXX)
export VENUS_REPRO_CACHE="$work/cache" VENUS_REPRO_RUNS="$work/runs"
mkdir -p "$out"
vr carry unpack "$carry" "$work/carry"
manifest="$work/carry/manifest.json"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
vr doctor --profile nix --manifest "$manifest" --host-vulkan host || true
status=0
vr run --profile nix --manifest "$manifest" --host-vulkan host --run-dir "$work/out/run" || status=$?
vr bench --profile nix --manifest "$manifest" --host-vulkan host --frames "$frames" --repeat "$repeat" \
  --run-dir "$work/out/bench" || status=$?
tar -czf "$out/results.tar.gz" -C "$work/out" --exclude '*.rgba' run bench || true
rm -rf "$work"
exit "$status"

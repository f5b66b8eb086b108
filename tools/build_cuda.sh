#!/usr/bin/env bash
# Builds racm3 with candle's CUDA backend (`--features cuda`) on a machine without a CUDA
# toolkit, e.g. to carry the binary to a GPU machine that has a driver but no Rust.
#
#   tools/build_cuda.sh [OUT_DIR]      (default: target-cuda)
#
# What it does, and why:
# - candle's kernels are compiled by nvcc at build time; nvcc, its headers and the CUDA
#   runtime come from NVIDIA's Python wheels (pip download, nothing installed system-wide).
#   CUDA_VERSION picks the toolkit (default 13.0, for drivers of the 580 series and newer;
#   the PTX of a newer toolkit does not load on an older driver).
# - candle links cudarc to the driver and the CUDA libraries dynamically. The link needs a
#   library of each name; without the toolkit, stubs stand in (as the toolkit's own
#   stubs/libcuda.so does): they define cudarc's function names and carry the real
#   libraries' sonames, so at run time the GPU machine's libcuda, cuBLAS and cuRAND load.
# - CUDA_COMPUTE_CAP (default 90: H100, H200) picks the GPU generation of the kernels.
#
# On the GPU machine: LD_LIBRARY_PATH must reach libcuda.so.1, libcublas.so.13,
# libcurand.so.10 and libcudart.so.13 (a CUDA 13 PyTorch install has the last three).
# Check the backend there with the test binary this script also builds:
#   <test binary> (tests/cuda.rs of crates/racm3: fixtures and CPU parity on the GPU).
set -euo pipefail

out=${1:-target-cuda}
cuda_version=${CUDA_VERSION:-13.0}
major=${cuda_version%%.*}
minor=${cuda_version#*.}
work=${CUDA_WORK:-$PWD/$out/toolkit}
mkdir -p "$work/wheels" "$work/stubs"

python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64 \
  --python-version 3.12 -d "$work/wheels" \
  "nvidia-cuda-nvcc==$cuda_version.*" "nvidia-cuda-runtime==$cuda_version.*" \
  "nvidia-cuda-crt==$cuda_version.*" "nvidia-cuda-cccl==$cuda_version.*" \
  "nvidia-nvvm==$cuda_version.*"
for wheel in "$work"/wheels/*.whl; do
  python3 -m zipfile -e "$wheel" "$work/root"
done
cuda_home="$work/root/nvidia/cu$major"
chmod +x "$cuda_home"/bin/* "$cuda_home"/nvvm/bin/*
ln -sf "libcudart.so.$major" "$cuda_home/lib/libcudart.so"

registry=$(cargo metadata --format-version 1 --features racm3-cli/cuda |
  python3 -c 'import json, sys, os
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "cudarc":
        print(os.path.dirname(p["manifest_path"]))')
for spec in driver:cuda:libcuda.so.1 nvrtc:nvrtc:libnvrtc.so.$major \
  curand:curand:libcurand.so.10 cublas:cublas:libcublas.so.$major \
  cublaslt:cublasLt:libcublasLt.so.$major; do
  IFS=: read -r module library soname <<<"$spec"
  grep -oP '^pub unsafe fn \K\w+' "$registry/src/$module/sys/mod.rs" | sort -u |
    sed 's/.*/void &(void) {}/' >"$work/stubs/$library.c"
  cc -shared -fPIC -Wl,-soname,"$soname" -o "$work/stubs/lib$library.so" "$work/stubs/$library.c"
done

export CUDA_HOME="$cuda_home" CUDA_ROOT="$cuda_home"
export PATH="$cuda_home/bin:$cuda_home/nvvm/bin:$PATH"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION="${major}0${minor}0"
export LIBRARY_PATH="$cuda_home/lib:$work/stubs"
export CARGO_TARGET_DIR="$out"
cargo build --release -p racm3-cli --features cuda
cargo test --release -p racm3 --features cuda --test cuda --no-run 2>&1 | tee "$work/test-build.log"
echo "racm3: $out/release/racm3"
grep -o "$out/release/deps/cuda-[0-9a-f]*" "$work/test-build.log" | sed 's/^/tests: /'

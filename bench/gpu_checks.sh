#!/usr/bin/env bash
# The GPU checks of pgf in one prepared run (CUDA machine; see bench/results/README.md):
#   1. the Triton kernel tests compiled on the GPU (tests/test_kernels_triton.py)
#   2. bench/kernel_scan.py (Triton vs reference scan, times, bandwidth, peak memory)
#   3. bench/model_gradient_memory.py (Caduceus-ps-sized model, 131k and 1M bp)
#   4. the README sample job on the GPU with --kernels triton vs reference, and `pgf check`
#   5. the rest of the test suite with CUDA visible
# Every step has its own time limit (about 9 minutes in all on an H200); logs and JSON go to
# $OUT (default bench/results/gpu-run).
#
#     OUT=/tmp/gpu bash bench/gpu_checks.sh      # from the repository root
#
# Missing pure-Python dependencies may be given as wheels in .whl/ (installed to /tmp/site).
set -u -o pipefail
OUT=${OUT:-bench/results/gpu-run}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
log="$OUT/run.log"

step() { echo "=== $(date -u +%H:%M:%S) $*" | tee -a "$log"; }

step environment
{ nvidia-smi -L; $PY -c "import torch, triton; print(torch.__version__, torch.version.cuda, triton.__version__, torch.cuda.get_device_name())"; } 2>&1 | tee -a "$log"
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -3 | tee -a "$log"
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | tail -3 | tee -a "$log"
command -v pgf | tee -a "$log"

step "triton kernel tests on the GPU"
timeout 150 $PY -m pytest tests/test_kernels_triton.py -q -n 8 -p no:cacheprovider -p no:benchmark >"$OUT/triton_tests.log" 2>&1
echo "rc=$?" | tee -a "$log"; tail -15 "$OUT/triton_tests.log" | tee -a "$log"

step "kernel scan benchmark"
timeout 110 $PY -m bench.kernel_scan --warmup 2 --repeats 5 --out "$OUT/kernel-scan.json" 2>&1 | tee "$OUT/kernel_scan.jsonl" | tail -3
echo "rc=$?" | tee -a "$log"

step "model gradient memory benchmark"  # ~4.5 min on an H200 (the 1M gradient alone took 181 s)
timeout 330 $PY -m bench.model_gradient_memory --out "$OUT/model-gradient-memory.json" 2>&1 | tee "$OUT/model_gradient_memory.jsonl"
echo "rc=$?" | tee -a "$log"
step "model gradient at 131k with 8k tiles (fewer, larger launches)"
timeout 90 $PY -m bench.model_gradient_memory --lengths 131072 --tile 8192 --out "$OUT/model-gradient-memory-tile8192.json" 2>&1 | tail -1 | tee -a "$log"

step "sample job: triton vs reference kernels"
region=chr1:99,578-139,116
window=chr1:104,553-104,752
for kernels in reference triton; do
    began=$EPOCHREALTIME
    timeout 60 pgf attribute sample_data/genome.fa --region $region --target-window $window \
        --kernels $kernels -o "/tmp/sample_$kernels.h5" --force 2>&1 | tail -2 | tee -a "$log"
    echo "$kernels: wall $(awk "BEGIN{print $EPOCHREALTIME - $began}") s" | tee -a "$log"
done
timeout 30 $PY - <<'EOF' 2>&1 | tee -a "$log"
import h5py, numpy as np
key = "chr1:99578-139116"
ref, tri = (h5py.File(f"/tmp/sample_{k}.h5")[key] for k in ("reference", "triton"))
for name in ("gradient", "score"):
    a, b = np.asarray(ref[name], dtype=np.float64), np.asarray(tri[name], dtype=np.float64)
    print(f"{name}: max |triton - reference| / max |reference| = {np.abs(a - b).max() / np.abs(a).max():.3e}")
EOF
timeout 60 pgf check sample_data/genome.fa --region chr1:99,578-139,116 --kernels triton 2>&1 | tail -6 | tee -a "$log"

step "rest of the test suite with CUDA visible"
# one thread per worker: 8 workers of 16 threads each crawled (14% in 100 s); so, 31 s in all
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 timeout 100 $PY -m pytest -q -n 14 -p no:cacheprovider -p no:benchmark -rf \
    --ignore=tests/test_kernels_triton.py >"$OUT/suite.log" 2>&1
echo "rc=$?" | tee -a "$log"; tail -8 "$OUT/suite.log" | tee -a "$log"
step done

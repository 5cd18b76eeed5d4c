#!/usr/bin/env bash
# The GPU checks of pgf in one prepared run (CUDA machine; see bench/results/README.md):
#   1. the Triton kernel tests compiled on the GPU (the `triton` tests of tests/test_kernels_{scan,conv,ssd}.py
#      and test_kernels_conv_triton.py: the selective scan, the causal conv, the Mamba-2 SSD scan), the
#      adjoint running the Triton VJP from kept residuals, and no host synchronisation inside a sweep
#      (tests/test_host_syncs.py, under torch's sync debug mode)
#   2. bench/kernel_scan.py (Triton vs reference scan, times, bandwidth, peak memory)
#   3. the README sample job on the GPU with --kernels triton vs reference, and `pgf check`
#   4. the rest of the test suite with CUDA visible
#   5. bench/model_gradient_memory.py (Caduceus-ps-sized model at 131k; LONG=1: and 1M, +4.5 min)
#   6. bench/throughput.py --device cuda (every engine, reference vs Triton kernels, the GPU's
#      matmul FLOP/s and copy bandwidth; JSON bench/results/<device>-throughput.json, copied to $OUT)
#   7. the model gradient at 131k with 8k tiles
# Correctness first, benchmarks after. Every step has its own time limit, cut to what is left of
# DEADLINE seconds (default 600) from the start, so the whole run stays within about 10 minutes
# (the last steps shrink or are skipped when earlier ones ran long). On an H200 (run 1, c2f5c4e):
# Triton tests 42 s, kernel scan 66 s, sample jobs and check ~40 s, suite ~45 s, model gradient
# 131k ~45 s (1M: 25 s forward + 181 s gradient). Logs and JSON go to $OUT (default bench/results/gpu-run).
#
#     OUT=/tmp/gpu bash bench/gpu_checks.sh      # from the repository root
#     LONG=1 DEADLINE=900 OUT=/tmp/gpu bash bench/gpu_checks.sh   # also the 1,048,576-bp gradients
#
# Missing pure-Python dependencies may be given as wheels in .whl/ (installed to /tmp/site).
set -u -o pipefail
OUT=${OUT:-bench/results/gpu-run}
LONG=${LONG:-0}
DEADLINE=${DEADLINE:-600}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
log="$OUT/run.log"
START=$SECONDS

step() { echo "=== $(date -u +%H:%M:%S) +$((SECONDS - START))s $*" | tee -a "$log"; }
# limit N: N seconds, or what is left of DEADLINE if less (0: skip the step)
limit() { local left=$((DEADLINE - (SECONDS - START))); ((left < 20)) && left=0; echo $((left < $1 ? left : $1)); }
skip() { echo "skipped: $1 s of DEADLINE=$DEADLINE left" | tee -a "$log"; }

step environment
{ nvidia-smi -L; $PY -c "import torch, triton; print(torch.__version__, torch.version.cuda, triton.__version__, torch.cuda.get_device_name())"; } 2>&1 | tee -a "$log"
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -3 | tee -a "$log"
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | tail -3 | tee -a "$log"
command -v pgf | tee -a "$log"

step "triton kernel tests on the GPU"  # 42 s on an H200
t=$(limit 90)
if ((t > 0)); then
    timeout $t $PY -m pytest tests/test_kernels_scan.py tests/test_kernels_conv.py tests/test_kernels_conv_triton.py \
        tests/test_kernels_ssd.py tests/test_host_syncs.py tests/test_adjoint_engine.py -k triton \
        -q -n 8 -p no:cacheprovider -p no:benchmark >"$OUT/triton_tests.log" 2>&1
    echo "rc=$?" | tee -a "$log"; tail -15 "$OUT/triton_tests.log" | tee -a "$log"
else skip $t; fi

step "kernel scan benchmark"  # 66 s
t=$(limit 100)
if ((t > 0)); then
    timeout $t $PY -m bench.kernel_scan --warmup 2 --repeats 5 --out "$OUT/kernel-scan.json" 2>&1 | tee "$OUT/kernel_scan.jsonl" | tail -3
    echo "rc=$?" | tee -a "$log"
else skip $t; fi

step "sample job: triton vs reference kernels"  # 8-18 s each (the first Triton run compiles)
region=chr1:99,578-139,116
window=chr1:104,553-104,752
for kernels in reference triton; do
    t=$(limit 45)
    ((t > 0)) || { skip $t; continue; }
    began=$EPOCHREALTIME
    timeout $t pgf attribute sample_data/genome.fa --region $region --target-window $window \
        --kernels $kernels -o "/tmp/sample_$kernels.h5" --force 2>&1 | tail -2 | tee -a "$log"
    echo "$kernels: wall $(awk "BEGIN{print $EPOCHREALTIME - $began}") s" | tee -a "$log"
done
timeout 30 $PY - <<'PYEOF' 2>&1 | tee -a "$log"
import h5py, numpy as np
key = "chr1:99578-139116"
ref, tri = (h5py.File(f"/tmp/sample_{k}.h5")[key] for k in ("reference", "triton"))
for name in ("gradient", "score"):
    a, b = np.asarray(ref[name], dtype=np.float64), np.asarray(tri[name], dtype=np.float64)
    print(f"{name}: max |triton - reference| / max |reference| = {np.abs(a - b).max() / np.abs(a).max():.3e}")
PYEOF
t=$(limit 40)
if ((t > 0)); then
    timeout $t pgf check sample_data/genome.fa --region chr1:99,578-139,116 --kernels triton 2>&1 | tail -6 | tee -a "$log"
else skip $t; fi
t=$(limit 40)  # the Mamba-2 (SSD) mixer's Triton kernels inside a model, against autograd
if ((t > 0)); then
    timeout $t pgf check sample_data/genome.fa --region chr1:99,578-109,577 --model random-test-mamba2 --kernels triton 2>&1 \
        | tail -6 | tee -a "$log"
else skip $t; fi

step "rest of the test suite with CUDA visible"  # 31 s of tests, ~45 s in all
# one thread per worker: 8 workers of 16 threads each crawled (14% in 100 s); so, 31 s in all
t=$(limit 100)
if ((t > 0)); then
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 timeout $t $PY -m pytest -q -n 14 -p no:cacheprovider -p no:benchmark -rf \
        -k "not triton" >"$OUT/suite.log" 2>&1
    echo "rc=$?" | tee -a "$log"; tail -8 "$OUT/suite.log" | tee -a "$log"
else skip $t; fi

step "model gradient memory benchmark"  # 131k: ~45 s; LONG=1 adds 1M (~4 min: the 1M gradient alone took 181 s)
if ((LONG)); then lengths=131072,1048576; t=$(limit 330); else lengths=131072; t=$(limit 80); fi
if ((t > 0)); then
    timeout $t $PY -m bench.model_gradient_memory --lengths $lengths --out "$OUT/model-gradient-memory.json" 2>&1 | tee "$OUT/model_gradient_memory.jsonl"
    echo "rc=$?" | tee -a "$log"
else skip $t; fi

step "throughput: every engine, reference vs triton kernels, GPU calibration"
# Caduceus-ps-sized (large) model and the built-in model at 131,072 bp: forward, gradient, tangent1,
# autograd (skipped by its memory estimate where it cannot fit: the large model) x reference, triton;
# 14 child processes, ~4 min (an estimate: not yet run on a GPU). --budget ends the run (and writes the
# JSON) before the step's own timeout; cases it did not reach are recorded as skipped.
if ((LONG)); then t=$(limit 500); long=--long; ct=240; else t=$(limit 270); long=; ct=120; fi
if ((t > 30)); then
    timeout $t $PY -m bench.throughput --device cuda --caduceus-config large --lengths 131072 --caduceus-lengths 131072 \
        --engines forward,gradient,tangent1,autograd --kernels reference,triton $long --case-timeout $ct \
        --budget $((t - 15)) --out "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.jsonl" | tail -4 | tee -a "$log"
    echo "rc=$?" | tee -a "$log"
    saved=$(sed -n 's/^wrote //p' "$OUT/throughput.jsonl" | tail -1)
    if [ -n "$saved" ]; then cp "$saved" "$OUT/" && echo "copied $saved to $OUT" | tee -a "$log"; fi
else skip $t; fi

step "model gradient at 131k with 8k tiles (fewer, larger launches)"
t=$(limit 70)
if ((t > 0)); then
    timeout $t $PY -m bench.model_gradient_memory --lengths 131072 --tile 8192 --out "$OUT/model-gradient-memory-tile8192.json" 2>&1 | tail -1 | tee -a "$log"
else skip $t; fi
step done

#!/usr/bin/env bash
# Every GPU figure of docs/performance.md in one call (about 9 minutes; GARASAM_GPU_SECONDS overrides).
#
#   bash benchmarks/gpu_run.sh            # results in $OUT (default ./gpu_out)
#
# Runs from a plain checkout: garasam and benchmarks import from the repository root, and the
# wheels in .whl/ (segment-anything for the official reference; pytest if the machine has none)
# install into /tmp/site without network. Each step gets what is left of the budget; encoder.py
# skips what does not fit, reports failures per configuration and rewrites its tables after every
# row, so a step cut short still leaves its results. Steps in order of importance:
#   1. checks: the CUDA-only tests (real CUDA-graph capture, the compiled Triton rank kernel)
#   2. eager: vit_b and vit_h at batch 1 and 8: official fp32, ours frozen / GaRA / LoRA-16, GaRA with
#      the rank kernel, and both replayed as CUDA graphs (what prediction runs); a GaRA profile
#   3. training step: GaRA vit_b and vit_h at batch 8 on the fast encoder, without and with
#      activation checkpointing
#   4. compiled: vit_h at batch 8 (frozen and GaRA, per-block torch.compile, default attention)
#   5. SAM 2.1 Hiera-T and B+ (benchmarks/sam2_encoder.py: official sam2 against ours, frozen and with
#      adapters), if time is left; needs the sam2, hydra-core, omegaconf and antlr4 wheels in .whl/
#      (SAM2_BUILD_CUDA=0 pip wheel --no-deps --no-build-isolation sam2==1.1.0 -w .whl, and
#      pip download --no-deps hydra-core omegaconf antlr4-python3-runtime==4.9.3 -d .whl)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
TOTAL=${GARASAM_GPU_SECONDS:-540}
START=$(date +%s)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-$(command -v python || command -v python3)}

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

left() { echo $((TOTAL - ($(date +%s) - START))); }

# begin CAP NAME: BUDGET = min(CAP, time left - 15 s); fails (the step is skipped) under 30 s.
begin() {
    BUDGET=$(($(left) - 15))
    ((BUDGET > $1)) && BUDGET=$1
    if ((BUDGET < 30)); then
        echo "== $2: skipped, ${BUDGET}s left" | tee -a "$OUT/steps.txt"
        return 1
    fi
    echo "== $2: budget ${BUDGET}s" | tee -a "$OUT/steps.txt"
}
finish() { echo "== $1: exit $2 after $(($(date +%s) - START))s in all" | tee -a "$OUT/steps.txt"; }

# step CAP NAME ARGS...: benchmarks/encoder.py within its budget (it stops itself and keeps its table).
step() {
    local name=$2
    begin "$1" "$name" || return 0
    shift 2
    timeout -k 10 $((BUDGET + 30)) "$PYTHON" benchmarks/encoder.py --device cuda --time-budget "$BUDGET" \
        --out "$OUT/$name.md" "$@" 2>&1 | tee "$OUT/$name.log" | grep -v '^\s*$' | tail -n 3
    finish "$name" "${PIPESTATUS[0]}"
}

# capped CAP NAME CMD...: any command, killed at its budget; its output in $OUT/NAME.log.
capped() {
    local name=$2 status
    begin "$1" "$name" || return 0
    shift 2
    timeout -k 10 "$BUDGET" "$@" >"$OUT/$name.log" 2>&1
    status=$?
    finish "$name" "$status"
    tail -n 15 "$OUT/$name.log"
}

{
    nvidia-smi
    "$PYTHON" -c "import sys, torch, transformers; print('python', sys.version.split()[0], '| torch', torch.__version__, \
'| cuda', torch.version.cuda, '| transformers', transformers.__version__, '|', torch.cuda.get_device_name())"
    "$PYTHON" -c "import segment_anything, torchvision; print('segment_anything from', segment_anything.__file__, \
'| torchvision', torchvision.__version__)" || echo "segment_anything/torchvision import failed (see above)"
} 2>&1 | tee "$OUT/environment.txt"

capped 90 checks "$PYTHON" -m pytest -q -p no:cacheprovider tests/models/test_cuda_graphs.py \
    tests/adapters/test_rank_kernel.py
step 230 encoder_eager --models vit_b,vit_h --batch 1,8 --no-e2e --warmup 3 --repeats 10 --max-seconds 6 \
    --configs official_fp32,frozen,frozen_graphs,gara,gara_kernel,gara_graphs,gara_kernel_graphs,lora16 \
    --profile "$OUT/profile_gara_vit_h_b8.txt" --profile-model vit_h
for checkpointing in off on; do
    flag=()
    [ "$checkpointing" = on ] && flag=(--checkpointing)
    capped 75 "train_step_checkpointing_$checkpointing" "$PYTHON" benchmarks/train_step.py --device cuda \
        --models vit_b,vit_h --adapters gara --fast on --batch 8 --steps 5 --warmup 2 ${flag[@]+"${flag[@]}"} \
        --out "$OUT/train_step_checkpointing_$checkpointing.md"
done
step 120 encoder_compiled --models vit_h --batch 8 --configs frozen,gara --compile --no-e2e \
    --warmup 3 --repeats 10 --max-seconds 6

capped 200 sam2_encoder "$PYTHON" benchmarks/sam2_encoder.py --device cuda --models sam2.1_hiera_t,sam2.1_hiera_b+ \
    --batch 1,8 --max-seconds 5 --out "$OUT/sam2_encoder.md"

echo "== total $(($(date +%s) - START))s; tables:" | tee -a "$OUT/steps.txt"
for table in "$OUT"/encoder_*.md; do
    [ -f "$table" ] && sed -n '/^## Summary/,/^## Notes/p' "$table"
done
for table in "$OUT"/train_step_*.md; do
    [ -f "$table" ] && cat "$table"
done

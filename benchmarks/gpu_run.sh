#!/usr/bin/env bash
# Encoder benchmarks on one GPU in one call (about 6 minutes; GARASAM_GPU_SECONDS overrides).
#
#   bash benchmarks/gpu_run.sh            # results in $OUT (default ./gpu_out)
#
# Runs from a plain checkout: garasam and benchmarks import from the repository root, and the
# wheels in .whl/ (segment-anything for the official reference) install into /tmp/site without
# network. Each step gets what is left of the budget; encoder.py skips what does not fit, reports
# failures per configuration and rewrites its tables after every row, so a step cut short still
# leaves its results. Steps in order of importance:
#   1. eager: vit_b and vit_h at batch 1 and 8, prompted prediction, attention kernels, a profile
#   2. compiled: vit_h at batch 8 (frozen and GaRA, default attention) with the eager baseline, then
#      the attention kernels again with flex_attention compiled
#   3. eager vit_l, if time is left
#   4. vit_b at batch 1 as one CUDA graph, if time is left
#   5. SAM 2.1 Hiera-T and B+ (benchmarks/sam2_encoder.py: official sam2 against ours, frozen and with
#      adapters), if time is left; needs the sam2, hydra-core, omegaconf and antlr4 wheels in .whl/
#      (SAM2_BUILD_CUDA=0 pip wheel --no-deps --no-build-isolation sam2==1.1.0 -w .whl, and
#      pip download --no-deps hydra-core omegaconf antlr4-python3-runtime==4.9.3 -d .whl)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
TOTAL=${GARASAM_GPU_SECONDS:-360}
START=$(date +%s)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-$(command -v python || command -v python3)}

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

left() { echo $((TOTAL - ($(date +%s) - START))); }

# step CAP NAME ARGS...: run encoder.py with a budget of min(CAP, time left - 15 s).
step() {
    local cap=$1 name=$2 budget
    shift 2
    budget=$(($(left) - 15))
    ((budget > cap)) && budget=$cap
    if ((budget < 30)); then
        echo "== $name: skipped, ${budget}s left" | tee -a "$OUT/steps.txt"
        return
    fi
    echo "== $name: budget ${budget}s" | tee -a "$OUT/steps.txt"
    timeout -k 10 $((budget + 30)) "$PYTHON" benchmarks/encoder.py --device cuda --time-budget "$budget" \
        --out "$OUT/$name.md" "$@" 2>&1 | tee "$OUT/$name.log" | grep -v '^\s*$' | tail -n 3
    echo "== $name: exit ${PIPESTATUS[0]} after $(($(date +%s) - START))s in all" | tee -a "$OUT/steps.txt"
}

{
    nvidia-smi
    "$PYTHON" -c "import sys, torch, transformers; print('python', sys.version.split()[0], '| torch', torch.__version__, \
'| cuda', torch.version.cuda, '| transformers', transformers.__version__, '|', torch.cuda.get_device_name())"
    "$PYTHON" -c "import segment_anything, torchvision; print('segment_anything from', segment_anything.__file__, \
'| torchvision', torchvision.__version__)" || echo "segment_anything/torchvision import failed (see above)"
} 2>&1 | tee "$OUT/environment.txt"

step 170 encoder_eager --models vit_b,vit_h --batch 1,8 --warmup 3 --repeats 10 --max-seconds 8 \
    --attention-bench --profile "$OUT/profile_gara_vit_h_b8.txt" --profile-model vit_h
step 150 encoder_compiled --models vit_h --batch 8 --configs frozen,gara --compile --no-e2e \
    --attention-bench --warmup 3 --repeats 10 --max-seconds 8
step 90 encoder_vit_l --models vit_l --batch 1,8 --configs official_fp32,official_bf16,frozen,gara,lora16 \
    --no-e2e --warmup 3 --repeats 10 --max-seconds 6
step 120 encoder_cudagraphs --models vit_b --batch 1 --configs frozen,frozen_compiled,frozen_cudagraphs \
    --no-e2e --warmup 5 --repeats 20 --max-seconds 5

budget=$(($(left) - 15))
if ((budget >= 60)); then
    echo "== sam2_encoder: budget ${budget}s" | tee -a "$OUT/steps.txt"
    timeout -k 10 "$budget" "$PYTHON" benchmarks/sam2_encoder.py --device cuda \
        --models sam2.1_hiera_t,sam2.1_hiera_b+ --batch 1,8 --max-seconds 5 --out "$OUT/sam2_encoder.md" \
        2>&1 | tee "$OUT/sam2_encoder.log" | grep '^| sam2' || true
else
    echo "== sam2_encoder: skipped, ${budget}s left" | tee -a "$OUT/steps.txt"
fi

echo "== total $(($(date +%s) - START))s; tables:" | tee -a "$OUT/steps.txt"
for table in "$OUT"/encoder_*.md; do
    [ -f "$table" ] && sed -n '/^## Summary/,/^## Notes/p' "$table"
done

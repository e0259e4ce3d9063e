#!/usr/bin/env bash
# FLARE on a CUDA GPU, checked in one go; exits non-zero on the first failure.
#
#   1. pytest -m cuda: one training step + one evaluation of FLARE (cached, uncached, spilled to disk),
#      FLARE-MT, X-Mixup and input-fusion on the GPU, in fp32 and bf16 autocast (tests/test_cuda.py);
#      every selected test must run (none skipped).
#   2. a short real run per precision: xlt train --method flare on e5-small, NusaX ace, 64 examples, 2 epochs
#      (the second reads the source-state cache), then xlt evaluate, which must reproduce metrics.json;
#      metrics.json must say source_passes_per_example 1.0.
#
# Usage (from anywhere; data from $XLT_DATA_DIR, else ../shared/datasets):
#   benchmarks/gpu_check.sh              # needs a CUDA GPU
#   benchmarks/gpu_check.sh --allow-cpu  # dry run of this script without a GPU (XLT_GPU_CHECK_ALLOW_CPU=1 alike):
#                                        # the cuda tests are skipped, the runs train on the CPU, fp32 only
# Environment: PYTHON (default python), XLT_GPU_CHECK_MODEL (default e5-small),
#   XLT_GPU_CHECK_PRECISIONS (default "fp32 bf16" on a GPU, "fp32" in a dry run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python}
allow_cpu=${XLT_GPU_CHECK_ALLOW_CPU:-0}
if [[ "${1:-}" == "--allow-cpu" ]]; then allow_cpu=1; fi

if $PYTHON -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    gpu=1
    precisions=${XLT_GPU_CHECK_PRECISIONS:-fp32 bf16}
else
    gpu=0
    if [[ "$allow_cpu" != 1 ]]; then
        echo "gpu_check: no CUDA GPU (pass --allow-cpu for a dry run of this script on the CPU)" >&2
        exit 1
    fi
    echo "gpu_check: no CUDA GPU: dry run on the CPU" >&2
    precisions=${XLT_GPU_CHECK_PRECISIONS:-fp32}
fi
model=${XLT_GPU_CHECK_MODEL:-e5-small}
work=$(mktemp -d "${TMPDIR:-/tmp}/xlt-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== pytest -m cuda" >&2
$PYTHON -m pytest -q -p no:cacheprovider -m cuda -rs --junitxml "$work/cuda.xml" tests
$PYTHON - "$work/cuda.xml" "$gpu" <<'EOF'
import sys
import xml.etree.ElementTree as ET

suite = ET.parse(sys.argv[1]).getroot().find("testsuite")
tests, skipped = int(suite.get("tests")), int(suite.get("skipped"))
if tests == 0 or (sys.argv[2] == "1" and skipped):
    sys.exit(f"gpu_check: {tests} cuda tests, {skipped} skipped: every cuda test must run on a GPU")
print(f"gpu_check: {tests} cuda tests, {skipped} skipped", file=sys.stderr)
EOF

for precision in $precisions; do
    flags=()
    if [[ "$precision" == bf16 ]]; then flags=(--bf16); fi
    run="$work/flare-$precision"
    echo "== xlt train + evaluate, FLARE on $model, $precision" >&2
    $PYTHON -m xlt.cli train --model "$model" --task nusax --method flare --target-lang ace \
        --max-train-examples 64 --max-eval-examples 64 --epochs 2 --batch-size 16 \
        --stage1-max-train-examples 64 --stage1-epochs 1 --stage1-dir "$work/stage1" \
        --no-show-progress "${flags[@]}" --output-dir "$run"
    $PYTHON -m xlt.cli evaluate --run-dir "$run" > "$work/evaluate-$precision.json"
    $PYTHON - "$run/metrics.json" "$work/evaluate-$precision.json" <<'EOF'
import json
import sys

metrics = json.load(open(sys.argv[1]))
again = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
problems = []
if metrics.get("source_passes_per_example") != 1.0:
    problems.append(f"source_passes_per_example {metrics.get('source_passes_per_example')} (expected 1.0)")
if again.get("matches_stored") is not True:
    problems.append("xlt evaluate did not reproduce metrics.json")
if problems:
    sys.exit("gpu_check: " + "; ".join(problems))
print(f"gpu_check: {json.dumps(metrics['metrics'])}", file=sys.stderr)
EOF
done
echo "gpu_check: all passed ($([[ $gpu == 1 ]] && echo GPU || echo "CPU dry run"))" >&2

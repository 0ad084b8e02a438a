#!/usr/bin/env bash
# The prepared one-shot GPU benchmark: edgerec bench latency with the CUDA and CPU
# providers on a lent GPU machine (see /work/.library/device/README.md), bringing back
# latency.json, report.md and the plots.
#
# Why three steps and not one: the device machine has no network and no MiniLM weights
# (so the bundle -- fp16 graphs included -- is exported here, on the CPU), and a call
# may carry at most 64 MiB while the onnxruntime-gpu wheel (1.31.1, CUDA 13 + cuDNN 9,
# matching the H200 image's nvidia-* packages) is about 256 MB. So the wheel travels in
# parts over consecutive calls while the machine stays warm (30 s between calls), and
# the last call reassembles, checks its sha256, installs it and benchmarks.
#
#   1. here:    benchmarks/run_gpu.sh prepare RUN_DIR
#               -> .gpu/ (distilled fp32+fp16+int8 bundle, the run for the PyTorch
#                  comparison, the wheel's sha256) and .gpuw1/ .. .gpuwN/ (wheel parts),
#                  all ignored by git; prints the device calls to make.
#   2. device:  one call per part, back to back:
#               run(command="bash benchmarks/run_gpu.sh stage", carry=[".gpuwK"])
#   3. device:  run(command="bash benchmarks/run_gpu.sh run", carry=[".gpu"], timeout_s=540)
#               -> $OUT/gpu/{latency.json,report.md,*.png,bench.log}
#      then give_back, and copy the files to benchmarks/results/<target>-<date>/.
#
# A GPU box of your own needs only:  pip install "edgerec[gpu]" &&
#   edgerec bench latency BUNDLE --out DIR --providers cpu,cuda --precision fp32,fp16,int8
set -euo pipefail

ORT_GPU_VERSION="${ORT_GPU_VERSION:-1.31.1}"
PART_MB="${PART_MB:-56}"          # 64 MiB per call, less the working tree that always travels
STAGE=/tmp/edgerec-wheel           # where parts wait on the device between calls
SITE=/tmp/edgerec-site             # --target install of the wheel on the device
cd "$(dirname "$0")/.."

prepare() {
    local run="${1:?usage: run_gpu.sh prepare RUN_DIR}"
    command -v edgerec >/dev/null || { echo "activate the venv with edgerec installed first" >&2; exit 2; }
    if [ -d .git ]; then   # keep the bundle and wheel parts out of every call but their own
        mkdir -p .git/info
        for p in /.gpu/ '/.gpuw*/' /.gpu-wheel/; do
            grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude
        done
    fi
    rm -rf .gpu .gpuw* .gpu-wheel
    mkdir -p .gpu/run .gpu-wheel
    # distilled: the MiniLM teacher's text encoder alone (90 MB fp32) would not fit a call
    HF_HUB_OFFLINE=1 edgerec export "$run" --out .gpu/bundle --distill --precision fp32,int8,fp16
    cp "$run"/config.json "$run"/catalog.json "$run"/model.safetensors .gpu/run/
    [ -f "$run/metrics.json" ] && cp "$run/metrics.json" .gpu/run/
    # the run records where its data was; the latency bench never reads the data
    python - "$run" <<'PY'
import json, sys
from pathlib import Path
cfg = json.loads(Path(".gpu/run/config.json").read_text())
cfg.setdefault("data", {})["note"] = f"copied from {sys.argv[1]} for the GPU benchmark"
Path(".gpu/run/config.json").write_text(json.dumps(cfg, indent=2))
PY
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 -d .gpu-wheel "onnxruntime-gpu==${ORT_GPU_VERSION}"
    local wheel
    wheel=$(ls .gpu-wheel/onnxruntime_gpu-*.whl)
    (cd .gpu-wheel && sha256sum "$(basename "$wheel")") > .gpu/wheel.sha256
    split -b "${PART_MB}m" -d -a 2 "$wheel" .gpu-wheel/part-
    local i=0
    for part in .gpu-wheel/part-*; do
        i=$((i + 1))
        mkdir -p ".gpuw$i"
        mv "$part" ".gpuw$i/"
    done
    rm -f "$wheel"
    rmdir .gpu-wheel
    du -sh .gpu .gpuw*
    echo
    echo "device calls, back to back (the machine goes back after 30 s idle):"
    for d in .gpuw*; do
        echo "  run(command=\"bash benchmarks/run_gpu.sh stage\", carry=[\"$d\"], timeout_s=120)"
    done
    echo "  run(command=\"bash benchmarks/run_gpu.sh run\", carry=[\".gpu\"], timeout_s=540)"
}

stage() {
    mkdir -p "$STAGE"
    cp .gpuw*/part-* "$STAGE"/
    ls -la "$STAGE"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
}

install_wheel() {
    local sums=.gpu/wheel.sha256 name
    name=$(awk '{print $2}' "$sums")
    if [ -f ".whl/$name" ]; then             # carried whole (a call without the size limit)
        cp ".whl/$name" "$STAGE/$name"
    else
        cat "$STAGE"/part-* > "$STAGE/$name"
    fi
    (cd "$STAGE" && sha256sum -c "$OLDPWD/$sums")
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$STAGE/$name"
}

cuda_library_path() {
    # the image's CUDA 13 / cuDNN 9 libraries live in nvidia-* pip packages
    python3 - <<'PY'
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
dirs = sorted({os.path.dirname(p) for base in nvidia.__path__ for p in glob.glob(os.path.join(base, "**", "lib*.so*"), recursive=True)})
print(":".join(dirs))
PY
}

run_bench() {
    local out="${OUT:-$PWD/gpu-out}/gpu"
    mkdir -p "$out" "$STAGE"
    exec > >(tee "$out/bench.log") 2>&1
    echo "== $(date -u +%FT%TZ) $(hostname)"
    nvidia-smi || echo "nvidia-smi failed: no GPU visible"
    install_wheel
    export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    local libs
    libs=$(cuda_library_path)
    export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
    python3 - <<'PY'
import onnxruntime as ort, numpy, sys
print("python", sys.version.split()[0], "numpy", numpy.__version__)
print("onnxruntime", ort.__version__, ort.__file__, ort.get_device(), ort.get_available_providers())
PY
    python3 -m edgerec info || true
    # 1. CUDA behaviour and latency against the CPU runtime and PyTorch on the same GPU
    timeout 180 python3 benchmarks/gpu_checks.py --bundle .gpu/bundle --run .gpu/run \
        --out "$out/checks.json" || echo "gpu_checks exited with $?"
    # 2. the trainer on the GPU (--device auto), synthetic data, content-free text vectors
    #    (the MiniLM weights are not on the machine); SKIP_TRAIN=1 skips it
    [ -n "${SKIP_TRAIN:-}" ] || timeout 100 python3 -m edgerec train --dataset synthetic --out /tmp/train-gpu \
        --device auto --text-encoder random --epochs 2 --quiet \
        || echo "train --device auto exited with $?"
    [ -n "${SKIP_TRAIN:-}" ] || python3 - <<'PY' || true
import json
from pathlib import Path
run = Path("/tmp/train-gpu")
cfg = json.loads((run / "config.json").read_text())["training"]
m = json.loads((run / "metrics.json").read_text())
print(f"train --device auto: device={cfg['device']} samples={cfg['samples']}",
      "epochs (n, s, valid ndcg@10):",
      [(h["epoch"], round(h["seconds"], 2), h["valid"].get("ndcg@10")) for h in m["history"]],
      "test ndcg@10:", m.get("test", {}).get("ndcg@10"))
PY
    # 3. the latency sweep (CPU and CUDA in one process): one history and a batch, the
    #    bundle's catalog and 1M synthetic rows
    local precisions
    precisions=$(python3 -c "import json; print(','.join(json.load(open('.gpu/bundle/manifest.json'))['graphs']['user_encoder']))")
    # SIGINT: the sweep stops and still writes the cells it measured
    timeout -s INT "${SWEEP_S:-120}" python3 -m edgerec bench latency .gpu/bundle --out /tmp/sweep \
        --target "${TARGET:-h200}" --providers cpu,cuda --precision "$precisions" \
        --threads 1,all --batch 1,256 --history 50 \
        --catalog bundle,1000000 --run .gpu/run --max-time 0.3 --add-items 64 \
        --note "lent H200 machine (16 cores); onnxruntime-gpu ${ORT_GPU_VERSION} carried as a wheel; PyTorch comparison on the CPU" \
        --quiet || echo "bench latency exited with $?"
    cp /tmp/sweep/latency.json /tmp/sweep/report.md "$out"/ || true  # 8 files come back at most
    ls -la "$out"
}

case "${1:-}" in
    prepare) shift; prepare "$@" ;;
    stage) stage ;;
    run) run_bench ;;
    *) echo "usage: $0 prepare RUN_DIR | stage | run" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# Install the transfer extras of objssl: detectron2 (d2) and mmsegmentation (mmseg), plus the real
# annotated images their tests use (labelme's examples).
#
#   bash transfer/install.sh                 # both frameworks + test data, into `python`'s environment
#   PYTHON=.venv/bin/python bash transfer/install.sh
#   bash transfer/install.sh d2              # only detectron2 (also: mmseg, data)
#
# Safe to run again: every step checks what is there first. torch, torchvision, numpy, timm and
# opencv-contrib-python-headless keep the versions they had before (a pip constraints file pins
# them; if a package needed another version pip stops with an error instead of changing them).
#
# Why a script and not only `pip install objssl[d2,mmseg]`:
# * detectron2 is not on PyPI. `sal-detectron2==0.7.2` is upstream detectron2 (mid-2024) whose only
#   wheel is tagged cp310 and declares numpy<2 (wrongly: it runs with numpy 2). We install it with
#   --no-deps for cp310 into a scratch folder and move only the `detectron2` package and its
#   metadata into site-packages: not its stray top-level `tools/` package, not its compiled
#   `_C.cpython-310*.so` (which Python >= 3.11 cannot load; Mask R-CNN runs on torchvision's ops
#   without it; missing: deformable conv, rotated boxes). Its real runtime deps (fvcore, iopath,
#   ...) come from objssl's `d2` extra; `setuptools<81` is installed only when `pkg_resources` is
#   missing (detectron2.model_zoo imports it; objssl's configs do not need the model zoo).
# * mmcv-lite pulls opencv-python, whose files replace those of opencv-contrib-python-headless and
#   remove cv2.ximgproc (selective search): the contrib package is reinstalled last.
# * mmcv-lite has no compiled `mmcv._ext`, which `import mmseg.models` needs; objssl registers a
#   stand-in module (objssl/export/_mmcv_ext_stub.py) when objssl.integrations.mmseg is
#   imported and the real one is missing. Nothing is written into site-packages for it.
# * mmengine 0.10.7 calls torch.load without weights_only: with torch >= 2.6 reloading Runner
#   checkpoints (load_from / resume) needs TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (transfer/mmseg/train.py
#   sets it for its own process).
set -euo pipefail

PY=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
DATA_CACHE=${OBJSSL_DATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/objssl}
LABELME_VERSION=6.3.1
D2_VERSION=0.7.2
WHAT=${*:-d2 mmseg data}
export PIP_DISABLE_PIP_VERSION_CHECK=1

pip() { "$PY" -m pip "$@"; }
log() { echo "[transfer/install.sh] $*"; }
have_version() {  # have_version DIST VERSION -> 0 if exactly that version is installed
    "$PY" - "$1" "$2" <<'EOF'
import sys
from importlib import metadata
try:
    sys.exit(0 if metadata.version(sys.argv[1]) == sys.argv[2] else 1)
except metadata.PackageNotFoundError:
    sys.exit(1)
EOF
}

start=$(date +%s)
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
log "python: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])'); site-packages: $SITE"

# Pins of what must not change, from the environment as it is now.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" - > "$WORK/constraints.txt" <<'EOF'
from importlib import metadata
for dist in ("torch", "torchvision", "numpy", "timm", "opencv-contrib-python-headless"):
    try:
        print(f"{dist}=={metadata.version(dist)}")
    except metadata.PackageNotFoundError:
        pass
EOF
cp "$WORK/constraints.txt" "$WORK/before.txt"
log "keeping: $(tr '\n' ' ' < "$WORK/constraints.txt")"
"$PY" -c "import torch" 2>/dev/null || { log "torch is not installed in $PY's environment: install objssl first (pip install -e .)"; exit 1; }

# ------------------------------------------------------------------------------------ detectron2
install_d2() {
    log "detectron2: runtime dependencies"
    pip install -q -c "$WORK/constraints.txt" \
        "fvcore>=0.1.5,<0.1.6" "iopath>=0.1.7,<0.1.10" "omegaconf>=2.1,<2.4" hydra-core yacs \
        termcolor tabulate cloudpickle matplotlib tensorboard pycocotools "Pillow>=7.1" packaging
    if ! "$PY" -c "import pkg_resources" 2>/dev/null; then
        log "detectron2: pkg_resources missing (setuptools >= 81): installing setuptools<81"
        pip install -q "setuptools<81"
    fi
    if have_version sal-detectron2 "$D2_VERSION" && [ -f "$SITE/detectron2/__init__.py" ]; then
        log "detectron2: sal-detectron2==$D2_VERSION already installed"
    else
        log "detectron2: sal-detectron2==$D2_VERSION (cp310 wheel, no deps) via a scratch folder"
        pip install -q --no-deps --only-binary=:all: --python-version 3.10 --implementation cp \
            --target "$WORK/d2" "sal-detectron2==$D2_VERSION"
        rm -rf "$WORK/d2/tools"                          # stray top-level package of the wheel
        rm -f "$WORK"/d2/detectron2/_C.cpython-310*.so    # cannot load on this Python
        "$PY" - "$WORK/d2" <<'EOF'
# Drop the removed files from the wheel's RECORD so that `pip uninstall sal-detectron2` stays clean.
import glob, os, sys
for record in glob.glob(os.path.join(sys.argv[1], "sal_detectron2-*.dist-info", "RECORD")):
    lines = open(record).read().splitlines()
    keep = [l for l in lines if not (l.startswith("tools/") or "/_C.cpython-310" in l)]
    open(record, "w").write("\n".join(keep) + "\n")
EOF
        rm -rf "$SITE/detectron2" "$SITE"/sal_detectron2-*.dist-info
        mv "$WORK/d2/detectron2" "$WORK"/d2/sal_detectron2-*.dist-info "$SITE/"
    fi
}

# ------------------------------------------------------------------------------- mmsegmentation
install_mmseg() {
    log "mmseg: mmcv-lite 2.1.0, mmengine 0.10.7, mmsegmentation 1.2.2 (+ ftfy, regex they import)"
    pip install -q -c "$WORK/constraints.txt" \
        "mmcv-lite==2.1.0" "mmengine==0.10.7" "mmsegmentation==1.2.2" ftfy regex
}

# ------------------------------------------------------------------------------------ test data
install_data() {
    local apt_dir=/usr/share/doc/labelme-examples/examples
    local sdist_dir="$DATA_CACHE/labelme-$LABELME_VERSION/examples"
    if [ -f "$apt_dir/instance_segmentation/data_dataset_coco/annotations.json" ] \
        || [ -f "$sdist_dir/instance_segmentation/data_dataset_coco/annotations.json" ]; then
        log "data: labelme examples already present"
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "data: apt-get install labelme-examples"
        if (apt-get install -y -q labelme-examples >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q labelme-examples >/dev/null 2>&1; }) \
            && [ -d "$apt_dir" ]; then
            log "data: labelme examples in $apt_dir"
            return 0
        fi
        log "data: apt-get failed; using the labelme source archive from PyPI instead"
    fi
    log "data: labelme==$LABELME_VERSION source archive (examples only) into $DATA_CACHE"
    mkdir -p "$DATA_CACHE"
    pip download -q --no-deps --no-binary :all: "labelme==$LABELME_VERSION" -d "$WORK/labelme"
    tar xzf "$WORK/labelme/labelme-$LABELME_VERSION.tar.gz" -C "$WORK/labelme"
    rm -rf "$DATA_CACHE/labelme-$LABELME_VERSION"
    mkdir -p "$DATA_CACHE/labelme-$LABELME_VERSION"
    mv "$WORK/labelme/labelme-$LABELME_VERSION/examples" "$sdist_dir"
    log "data: labelme examples in $sdist_dir (tests find it; or set OBJSSL_LABELME_EXAMPLES)"
}

for part in $WHAT; do
    case "$part" in
        d2) install_d2 ;;
        mmseg) install_mmseg ;;
        data) install_data ;;
        *) log "unknown part '$part' (choose from: d2 mmseg data)"; exit 2 ;;
    esac
done

# opencv-python (pulled by mmcv-lite / mmengine) overwrites cv2 and removes cv2.ximgproc: put the
# contrib build back, at the version it had, last.
contrib=$(grep -i '^opencv-contrib-python-headless==' "$WORK/before.txt" || true)
# (a leftover cv2/ximgproc/ folder of typing stubs survives, so test the function itself)
has_ss="import cv2; cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()"
if [ -n "$contrib" ] && ! "$PY" -c "$has_ss" 2>/dev/null; then
    log "opencv: reinstalling $contrib (cv2.ximgproc was replaced)"
    pip install -q --force-reinstall --no-deps "$contrib"
fi

# Check: nothing pinned changed, and the frameworks import.
"$PY" - "$WORK/before.txt" <<'EOF'
import sys
from importlib import metadata
bad = []
for line in open(sys.argv[1]):
    dist, version = line.strip().split("==")
    now = metadata.version(dist)
    if now != version:
        bad.append(f"{dist} {version} -> {now}")
if bad:
    sys.exit("[transfer/install.sh] ERROR: versions changed: " + ", ".join(bad))
EOF
case " $WHAT " in *" d2 "*)
    "$PY" -W ignore -c "import detectron2, detectron2.modeling, detectron2.engine; print('[transfer/install.sh] detectron2', detectron2.__version__, 'imports')" ;;
esac
case " $WHAT " in *" mmseg "*)
    (cd "$ROOT" && "$PY" -W ignore -c "import objssl.integrations.mmseg, mmseg; print('[transfer/install.sh] mmseg', mmseg.__version__, 'imports (with objssl integration)')") \
        || (cd "$ROOT" && "$PY" -W ignore -c "import mmseg, mmengine, mmcv; print('[transfer/install.sh] mmseg', mmseg.__version__, 'installed (objssl integration not importable from here)')") ;;
esac
if [ -n "$contrib" ]; then
    "$PY" -c "$has_ss; print('[transfer/install.sh] cv2', cv2.__version__, 'with ximgproc selective search')"
fi
log "done in $(( $(date +%s) - start )) s"

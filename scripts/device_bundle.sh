#!/usr/bin/env bash
# What a bare GPU machine (the `device` tool's nvidia-h200, Python 3.12 with PyTorch, no network) lacks to run
# scripts/train_default_model.sh: the wheels of moderngl, glcontext and trimesh, and the GL / EGL loader
# libraries for headless rendering. Fetched here (package registries only) into .device-bundle/ (git-ignored),
# which the run carries:
#
#   scripts/device_bundle.sh
#   run(carry=[".device-bundle"], command="source scripts/device_bundle.sh --install && DEVICE=cuda WORKERS=14 \
#       BATCH=24 LR=6e-4 MINUTES=7 PYTHON=python3 scripts/train_default_model.sh $OUT/run")
#
# --install (on that machine): unpack the GL libraries into / and the wheels into /tmp/site; source it (it
# exports PYTHONPATH for the commands after it).
set -euo pipefail
BUNDLE=.device-bundle
if [ "${1:-}" = "--install" ]; then
    for deb in "$BUNDLE"/gl/*.deb; do dpkg -x "$deb" /; done
    ldconfig
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$BUNDLE"/whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
    # the driver's EGL vendor file, where the loader does not find it by itself
    vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    [ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor
    return 0 2>/dev/null || exit 0
fi
mkdir -p "$BUNDLE/whl" "$BUNDLE/gl" /tmp/amd64/partial
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$BUNDLE/whl" moderngl==5.13.0 glcontext==3.1.0 trimesh==5.2.0
apt_options=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
apt-get "${apt_options[@]}" update -qq
(cd "$BUNDLE/gl" && apt-get "${apt_options[@]}" download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -sh "$BUNDLE"

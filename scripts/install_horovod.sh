#!/usr/bin/env bash
# Install Horovod 0.28.1 (PyTorch + Gloo) into a Python environment.
#
# Usage: scripts/install_horovod.sh [PYTHON]
#   PYTHON  interpreter whose environment receives Horovod
#           (default: .venv/bin/python, relative to the repository root)
#
# Horovod 0.28.1 as released does not compile against current torch: its CMake
# files ask for C++14 while torch's headers need C++17. This script builds it
# from the sdist with the C++ standard raised to 17, and caches the wheel in
#   ${TTABENCH_CACHE_DIR:-$HOME/.cache/ttabench}/wheels/horovod-<hvd>-torch<torch>-<pytag>[-mpi]/
# because a Horovod wheel is ABI-tied to the exact torch (and Python) it was
# built against. A cache hit installs in seconds (~15 s including the checks);
# a build takes 3 minutes on 2 idle cores, ~10 minutes on a busy machine.
#
# Environment knobs:
#   TTABENCH_CACHE_DIR        cache root (default: $HOME/.cache/ttabench)
#   INSTALL_HOROVOD_VERBOSE=1 stream the compiler output instead of logging it only
#   INSTALL_HOROVOD_REBUILD=1 ignore an existing installation and cached wheel
#   MAKEFLAGS                 passed through; default -j<number of CPUs>
#   HOROVOD_CMAKE             cmake binary to use (default: cmake on PATH, >= 3.13)
set -euo pipefail

HOROVOD_VERSION=0.28.1
# Runtime requirements of horovod 0.28.1 (setup.py require_list; cffi because
# the PyTorch extension is built). They are also setup_requires for
# bdist_wheel, so they must be present before the no-isolation build.
HOROVOD_RUNTIME_DEPS=(cloudpickle psutil pyyaml packaging 'cffi>=1.4.0')

log() { echo "install_horovod: $*"; }
die() { echo "install_horovod: ERROR: $*" >&2; exit 1; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
cd "$REPO_ROOT"

PYTHON="${1:-.venv/bin/python}"
if [[ "$PYTHON" != */* ]]; then
    PYTHON="$(command -v "$PYTHON" || true)"
    [[ -n "$PYTHON" ]] || die "python interpreter '${1}' not found on PATH"
fi
[[ -x "$PYTHON" ]] || die "python interpreter '$PYTHON' not found or not executable (create the venv first)"
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
PY_BIN_DIR="$(dirname "$PYTHON")"
log "target interpreter: $PYTHON"

pip_() { "$PYTHON" -m pip --disable-pip-version-check "$@"; }

verify() {
    log "verifying: import horovod.torch"
    local ver
    # (horovod.torch has no __version__ attribute; the version lives on the package)
    ver="$("$PYTHON" -c 'import horovod, horovod.torch; print(horovod.__version__)')" \
        || die "horovod.torch does not import in $PYTHON"
    log "horovod.torch $ver imports"
    [[ "$ver" == "$HOROVOD_VERSION" ]] || die "expected horovod $HOROVOD_VERSION, got $ver"
    local hvdrun="$PY_BIN_DIR/horovodrun"
    [[ -x "$hvdrun" ]] || die "horovodrun not found at $hvdrun"
    log "$hvdrun --check-build:"
    # horovodrun execs helpers (python, mpirun, ...) by name: put the env's bin first.
    PATH="$PY_BIN_DIR:$PATH" "$hvdrun" --check-build
}

# --- 1. already installed? --------------------------------------------------
if [[ "${INSTALL_HOROVOD_REBUILD:-0}" != 1 ]] && "$PYTHON" - "$HOROVOD_VERSION" >/dev/null 2>&1 <<'EOF'
import sys
import horovod.torch  # fails if the extension is missing or ABI-incompatible with torch
import horovod
sys.exit(0 if horovod.__version__ == sys.argv[1] else 1)
EOF
then
    log "horovod $HOROVOD_VERSION with torch support is already installed in this environment; nothing to do"
    exit 0
fi

# --- 2. what are we building against? ----------------------------------------
TORCH_VERSION="$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null)" \
    || die "torch is not importable in $PYTHON; install torch first (Horovod is built against it)"
PY_TAG="$("$PYTHON" -c 'import sys; print("%s%d%d" % ({"cpython": "cp"}.get(sys.implementation.name, sys.implementation.name), *sys.version_info[:2]))')"

# MPI only if an MPI compiler wrapper is present; Gloo is always built.
if command -v mpicc >/dev/null 2>&1 && [[ "${HOROVOD_WITHOUT_MPI:-0}" != 1 ]]; then
    WITH_MPI=1
    FLAVOR_SUFFIX="-mpi"
    log "mpicc found ($(command -v mpicc)): building with MPI and Gloo"
else
    WITH_MPI=0
    FLAVOR_SUFFIX=""
    log "no mpicc: building with Gloo only (HOROVOD_WITHOUT_MPI=1)"
fi

CACHE_ROOT="${TTABENCH_CACHE_DIR:-$HOME/.cache/ttabench}"
WHEELS_ROOT="$CACHE_ROOT/wheels"
CACHE_KEY="horovod-${HOROVOD_VERSION}-torch${TORCH_VERSION}-${PY_TAG}${FLAVOR_SUFFIX}"
CACHE_DIR="$WHEELS_ROOT/$CACHE_KEY"
log "torch $TORCH_VERSION, python tag $PY_TAG; wheel cache: $CACHE_DIR"

find_cached_wheel() {
    compgen -G "$CACHE_DIR/horovod-${HOROVOD_VERSION}-*.whl" | head -n 1 || true
}

install_wheel() {
    local whl="$1" start=$SECONDS
    log "installing runtime dependencies: ${HOROVOD_RUNTIME_DEPS[*]}"
    pip_ install "${HOROVOD_RUNTIME_DEPS[@]}"
    log "installing $whl (--no-deps, so torch is left alone)"
    pip_ install --no-deps --force-reinstall "$whl"
    log "installed the wheel in $((SECONDS - start))s"
}

if [[ "${INSTALL_HOROVOD_REBUILD:-0}" == 1 ]]; then
    log "INSTALL_HOROVOD_REBUILD=1: ignoring any cached wheel"
    CACHED_WHEEL=""
else
    CACHED_WHEEL="$(find_cached_wheel)"
fi

if [[ -n "$CACHED_WHEEL" ]]; then
    log "cache hit: $CACHED_WHEEL"
    install_wheel "$CACHED_WHEEL"
    verify
    log "done"
    exit 0
fi

# --- 3. build from the sdist --------------------------------------------------
log "cache miss: building horovod $HOROVOD_VERSION from source (3-10 minutes on 2 cores, depending on load)"

command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
    || die "no C++ compiler found (apt-get install build-essential)"
"$PYTHON" - <<'EOF' || die "Python development headers (Python.h) are missing for $PYTHON"
import os, sysconfig, sys
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
EOF

mkdir -p "$WHEELS_ROOT"
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/install_horovod.XXXXXX")"
# The wheel is written to a partial dir next to the cache dir (same filesystem)
# and renamed into place only once complete: an interrupted build never leaves
# a half wheel in the cache.
PARTIAL_DIR="$(mktemp -d "$WHEELS_ROOT/.partial-${CACHE_KEY}.XXXXXX")"
chmod 755 "$PARTIAL_DIR"  # mktemp makes it 0700; it becomes the cache dir
cleanup() { rm -rf "$WORK_DIR" "$PARTIAL_DIR"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "installing build requirements (no build isolation): setuptools wheel ${HOROVOD_RUNTIME_DEPS[*]}"
pip_ install setuptools wheel "${HOROVOD_RUNTIME_DEPS[@]}"

# cmake >= 3.13 is required. Prefer the system one; otherwise pip's cmake (< 4:
# the vendored gloo/eigen CMake files declare very old minimum versions).
cmake_ok() {
    local bin="$1" v
    v="$("$bin" --version 2>/dev/null | sed -n 's/^cmake version \([0-9][0-9.]*\).*/\1/p')" || return 1
    [[ -n "$v" ]] || return 1
    "$PYTHON" -c 'import sys; v = tuple(int(x) for x in sys.argv[1].split(".")[:2]); sys.exit(0 if v >= (3, 13) else 1)' "$v"
}
if [[ -n "${HOROVOD_CMAKE:-}" ]]; then
    cmake_ok "$HOROVOD_CMAKE" || die "HOROVOD_CMAKE=$HOROVOD_CMAKE is not a working cmake >= 3.13"
elif command -v cmake >/dev/null 2>&1 && cmake_ok "$(command -v cmake)"; then
    HOROVOD_CMAKE="$(command -v cmake)"
else
    log "no cmake >= 3.13 on PATH: installing pip's cmake into the environment"
    pip_ install 'cmake>=3.13,<4'
    HOROVOD_CMAKE="$PY_BIN_DIR/cmake"
    cmake_ok "$HOROVOD_CMAKE" || die "pip's cmake at $HOROVOD_CMAKE does not work"
fi
export HOROVOD_CMAKE
# Harmless for cmake 3.x; lets cmake 4 accept the vendored cmake_minimum_required(2.8.12).
export CMAKE_POLICY_VERSION_MINIMUM="${CMAKE_POLICY_VERSION_MINIMUM:-3.5}"
log "using $("$HOROVOD_CMAKE" --version | head -n 1) ($HOROVOD_CMAKE)"

log "downloading the horovod $HOROVOD_VERSION sdist"
pip_ download --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$WORK_DIR/sdist"
SDIST="$(compgen -G "$WORK_DIR/sdist/horovod-${HOROVOD_VERSION}.tar.gz" | head -n 1 || true)"
[[ -n "$SDIST" ]] || die "sdist horovod-${HOROVOD_VERSION}.tar.gz was not downloaded"
tar -xzf "$SDIST" -C "$WORK_DIR"
SRC_DIR="$WORK_DIR/horovod-$HOROVOD_VERSION"
[[ -f "$SRC_DIR/setup.py" ]] || die "unexpected sdist layout: no $SRC_DIR/setup.py"

log "patching C++ standard 14 -> 17 (torch's headers require C++17)"
patched=0
for f in CMakeLists.txt horovod/torch/CMakeLists.txt; do
    [[ -f "$SRC_DIR/$f" ]] || continue
    n="$(grep -c 'set(CMAKE_CXX_STANDARD 14)' "$SRC_DIR/$f" || true)"
    if [[ "$n" -gt 0 ]]; then
        sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/g' "$SRC_DIR/$f"
        log "  $f: $n line(s) patched"
        patched=$((patched + n))
    fi
done
[[ "$patched" -gt 0 ]] || die "no 'set(CMAKE_CXX_STANDARD 14)' line found to patch; the sdist changed, check the patch"
if grep -n 'CMAKE_CXX_STANDARD 14' "$SRC_DIR/CMakeLists.txt" "$SRC_DIR/horovod/torch/CMakeLists.txt"; then
    die "C++14 still requested after patching (lines above)"
fi

export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1
export HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1
if [[ "$WITH_MPI" == 1 ]]; then
    export HOROVOD_WITH_MPI=1
    unset HOROVOD_WITHOUT_MPI
    MPI_FLAG="HOROVOD_WITH_MPI=1"
else
    export HOROVOD_WITHOUT_MPI=1
    unset HOROVOD_WITH_MPI
    MPI_FLAG="HOROVOD_WITHOUT_MPI=1"
fi
# Horovod's setup.py passes -j8 to make unless MAKEFLAGS is set; match the CPUs instead.
NCPU="$(nproc 2>/dev/null || echo 2)"
export MAKEFLAGS="${MAKEFLAGS:--j$NCPU}"
log "build env: HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 $MPI_FLAG HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=$MAKEFLAGS"

LOG_DIR="$CACHE_ROOT/logs"
mkdir -p "$LOG_DIR"
BUILD_LOG="$LOG_DIR/${CACHE_KEY}-$(date +%Y%m%d-%H%M%S).log"
log "building the wheel (pip wheel --no-build-isolation --no-deps); log: $BUILD_LOG"
build_start=$SECONDS
build_cmd=(pip_ wheel -v --no-cache-dir --no-build-isolation --no-deps -w "$PARTIAL_DIR" "$SRC_DIR")
if [[ "${INSTALL_HOROVOD_VERBOSE:-0}" == 1 ]]; then
    "${build_cmd[@]}" 2>&1 | tee "$BUILD_LOG" || build_rc=$?
else
    "${build_cmd[@]}" >"$BUILD_LOG" 2>&1 || build_rc=$?
fi
if [[ "${build_rc:-0}" != 0 ]]; then
    echo "----- last 60 lines of $BUILD_LOG -----" >&2
    tail -n 60 "$BUILD_LOG" >&2 || true
    die "wheel build failed (exit ${build_rc}); full log: $BUILD_LOG"
fi
BUILT_WHEEL="$(compgen -G "$PARTIAL_DIR/horovod-${HOROVOD_VERSION}-*.whl" | head -n 1 || true)"
[[ -n "$BUILT_WHEEL" ]] || die "pip wheel succeeded but produced no horovod wheel in $PARTIAL_DIR (log: $BUILD_LOG)"
log "built $(basename "$BUILT_WHEEL") in $((SECONDS - build_start))s"

# Move into place atomically (rename of a directory on the same filesystem).
if [[ -d "$CACHE_DIR" ]]; then
    # Another build won the race or a stale, wheel-less dir exists: replace it.
    rm -rf "$CACHE_DIR"
fi
mv "$PARTIAL_DIR" "$CACHE_DIR"
CACHED_WHEEL="$(find_cached_wheel)"
[[ -n "$CACHED_WHEEL" ]] || die "wheel vanished from $CACHE_DIR"
log "cached: $CACHED_WHEEL"

install_wheel "$CACHED_WHEEL"
verify
log "done"

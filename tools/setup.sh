#!/usr/bin/env bash
# Strait setup on Debian 12: install the packages the project needs, build,
# fetch the default model, and then (optionally) run or test.
#
#   tools/setup.sh          install + build + fetch the default model
#   tools/setup.sh run      ... then serve the default model (strait run, port 3001)
#   tools/setup.sh test     install + build + run the test suite (and fuzzers)
#
# Runs as root, or uses sudo for apt-get. Environment:
#   STRAIT_BUILD_DIR   build directory (default: build)
#   STRAIT_NO_APT=1    skip package installation
#   STRAIT_FUZZ_SECONDS  seconds per fuzz target in `test` (default 20; 0 skips)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${STRAIT_BUILD_DIR:-build}
MODE=${1:-setup}
case "$MODE" in setup|run|test) ;; *) echo "usage: tools/setup.sh [run|test]" >&2; exit 2;; esac

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  clang libclang-rt-14-dev              # libFuzzer targets
  libjemalloc-dev                       # the process allocator
  libcurl4-openssl-dev libssl-dev zlib1g-dev   # model downloads, checksums
  libdpdk-dev libibverbs-dev            # kernel-bypass transports
  qemu-system-x86 busybox-static ibverbs-providers cpio   # the soft-RoCE VM test (test_rdma_vm.sh)
  libh2o-evloop-dev                     # HTTP front end
  python3 python3-pip python3-venv      # the default model from PyPI; the openai client test
  iproute2 procps                       # network-namespace tests
  curl nghttp2-client                   # HTTP/1.1 + HTTP/2 client tests (curl, nghttp, h2load)
  chromium                              # the web UI's browser test (headless)
)

log() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

install_packages() {
  [ "${STRAIT_NO_APT:-0}" = 1 ] && return 0
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  log "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {
  log "building in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)"
}

fetch_model() {
  "$BUILD/strait" models pull
}

python_test_env() {
  # the official openai client (tests/integration/test_openai.sh) and a
  # DevTools-protocol client (tests/http/web_e2e.py), in a venv beside the
  # build (Debian 12 blocks system-wide pip installs)
  [ -x "$BUILD/pyenv/bin/python3" ] && "$BUILD/pyenv/bin/python3" -c "import openai, websocket" 2>/dev/null && return 0
  if python3 -m venv "$BUILD/pyenv" >/dev/null 2>&1 &&
     "$BUILD/pyenv/bin/pip" install -q openai websocket-client >/dev/null 2>&1; then
    log "test clients installed in $BUILD/pyenv"
  elif [ -n "${STRAIT_TESTS_ALLOW_SKIP:-}" ]; then
    log "could not install the python test clients; their tests will be skipped (STRAIT_TESTS_ALLOW_SKIP)"
  else
    die "could not install the python test clients (pip install openai websocket-client into $BUILD/pyenv): the API and web UI tests need them; set STRAIT_TESTS_ALLOW_SKIP=1 to run without them"
  fi
}

run_tests() {
  python_test_env
  log "running tests"
  local rc=0
  (cd "$BUILD" && ctest --output-on-failure -j"$(nproc)") || rc=$?
  # The AVX-512 kernels are opt-in until validated on such a CPU: where the
  # CPU has AVX-512 VNNI, run the kernel and golden tests on them and report
  # the outcome without failing the suite.
  if grep -qw avx512_vnni /proc/cpuinfo 2>/dev/null; then
    if (cd "$BUILD" && ST_CPU_ISA=avx512 timeout 900 ctest --timeout 300 --output-on-failure -R 'kernels/|engine/test_golden|engine/test_forward'); then
      echo "avx512 validation: PASS (informational)"
    else
      echo "avx512 validation: FAIL (informational; AVX-512 stays opt-in)"
    fi
  else
    echo "avx512 validation: skipped (this CPU has no AVX-512 VNNI)"
  fi
  local secs=${STRAIT_FUZZ_SECONDS:-20}
  if [ "$secs" != 0 ]; then
    tests/fuzz/run.sh "$secs" || rc=$?
  fi
  return $rc
}

install_packages
build
fetch_model
case "$MODE" in
  run)  exec "$BUILD/strait" run ;;
  test) run_tests ;;
esac

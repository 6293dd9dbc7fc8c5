#!/usr/bin/env bash
# Runs on a GPU machine that has no Node.js and no Vulkan loader, from the repository root with
# .cache/gpu-kit carried over (made by bench/gpu/pack.sh): unpacks Node and the trainer, installs
# Debian's Vulkan loader and GL dispatch libraries (dpkg -x into /, ldconfig), points the loader
# at the NVIDIA driver, and measures training throughput of the MLP and CharTransformer presets
# with tfjs on WebGPU and, where `import torch` works, the same models in PyTorch. Results (JSON
# and logs) go to $OUT. Exits 3 when no WebGPU GPU adapter is found.
set -uo pipefail
cd "$(dirname "$0")/../.."
KIT=${KIT:-.cache/gpu-kit}
OUT=${OUT:-$PWD/.cache/gpu-out}
mkdir -p "$OUT"
log() { echo "run.sh: $*" | tee -a "$OUT/run.log" >&2; }
die() {
  log "$2"
  exit "$1"
}

[ -f "$KIT/node.xz" ] || die 2 "no kit at $KIT: run 'bash bench/gpu/pack.sh' first and carry .cache/gpu-kit"
if command -v sha256sum >/dev/null; then
  (cd "$KIT" && sha256sum -c --quiet SHA256SUMS) || die 2 "the kit at $KIT is damaged (SHA256SUMS)"
fi

unxz_file() {
  if command -v xz >/dev/null; then
    xz -dc "$1"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
  fi
}

# dpkg -x where there is dpkg; otherwise read the ar archive and its data.tar.* with Python.
extract_deb() {
  if command -v dpkg >/dev/null; then
    dpkg -x "$1" "$2"
  else
    python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"!<arch>\n", "not a .deb"
pos = 8
while pos < len(data):
    name = data[pos:pos + 16].decode().strip().rstrip("/")
    size = int(data[pos + 48:pos + 58].decode().strip())
    body = data[pos + 60:pos + 60 + size]
    if name.startswith("data.tar"):
        tarfile.open(fileobj=io.BytesIO(body)).extractall(sys.argv[2])
        break
    pos += 60 + size + (size & 1)
else:
    sys.exit("no data.tar in " + sys.argv[1])
PY
  fi
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)
unxz_file "$KIT/node.xz" >"$WORK/node" && chmod +x "$WORK/node" || die 2 "cannot unpack node"
unxz_file "$KIT/app.tar.xz" | tar -x -C "$WORK" || die 2 "cannot unpack the app"
log "node $("$WORK/node" --version), unpacked in $(($(date +%s) - start)) s"

# INSTALL_ROOT=/some/dir keeps the system untouched (for a local check of the kit).
install_root=${INSTALL_ROOT:-/}
[ "$(id -u)" = 0 ] || [ "$install_root" != / ] || install_root="$WORK/sysroot"
for deb in "$KIT"/debs/*.deb; do extract_deb "$deb" "$install_root" || die 2 "cannot unpack $deb"; done
if [ "$install_root" = / ]; then
  ldconfig 2>/dev/null || true
else
  export LD_LIBRARY_PATH="$install_root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
fi
log "Vulkan loader and GL libraries unpacked into $install_root"

if [ -z "${VK_DRIVER_FILES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then
      export VK_DRIVER_FILES="$icd"
      break
    fi
  done
fi
log "VK_DRIVER_FILES=${VK_DRIVER_FILES:-<none found>}"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/nvidia-smi.csv" 2>&1 || true
fi

quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick)
backend=${BACKEND:-WebGPU}
(cd "$WORK/app" && "$WORK/node" dist/bench/gpu/throughput.js --backend "$backend" --out "$OUT/tfjs-webgpu.json" ${quick[@]+"${quick[@]}"}) \
  2>&1 | tee "$OUT/tfjs-webgpu.log"
tfjs_status=${PIPESTATUS[0]}
if [ "$tfjs_status" = 3 ]; then
  log "no WebGPU GPU adapter found (see $OUT/tfjs-webgpu.log): is the NVIDIA Vulkan ICD at VK_DRIVER_FILES, and libvulkan.so.1 installed?"
elif [ "$tfjs_status" != 0 ]; then
  log "the tfjs benchmark failed with status $tfjs_status"
fi

torch_status=skipped
if python3 -c "import torch" 2>/dev/null; then
  python3 bench/gpu/torch_bench.py --out "$OUT/pytorch.json" ${quick[@]+"${quick[@]}"} 2>&1 | tee "$OUT/pytorch.log"
  torch_status=${PIPESTATUS[0]}
else
  log "PyTorch is not importable here: skipped the PyTorch comparison"
fi
log "done in $(($(date +%s) - start)) s: tfjs status $tfjs_status, PyTorch status $torch_status"
exit "$tfjs_status"

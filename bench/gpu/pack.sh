#!/usr/bin/env bash
# Packs what a GPU machine without Node.js needs to run the trainer's WebGPU throughput benchmark
# into .cache/gpu-kit/ (git-ignored, at most 60 MiB):
#   node.xz       the pinned Node 22 binary (node_modules/node), xz-compressed
#   app.tar.xz    the built trainer files the benchmark needs, a package.json, and a trimmed
#                 node_modules: each tfjs package's package.json + main bundle (+ the WASM
#                 binaries), their small runtime dependencies, and webgpu with only linux-x64 Dawn
#   debs/         Debian's Vulkan loader and GL/EGL dispatch libraries (libvulkan1 libegl1
#                 libglvnd0 libopengl0 libgl1 libglx0 libgles2), which the NVIDIA Vulkan ICD needs
# bench/gpu/run.sh unpacks and runs it there. Usage: bash bench/gpu/pack.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
KIT=.cache/gpu-kit
LIMIT_BYTES=$((60 * 1024 * 1024))

# tsc emits even when another part of the repository has type errors; what matters here is that
# the files the kit needs were emitted.
npm run build --silent || echo "pack: npm run build reported errors (above); checking the emitted files" >&2
for file in dist/bench/gpu/throughput.js dist/trainer-image/training/backend.js dist/trainer-image/training/model.js; do
  [ -f "$file" ] || { echo "pack: $file was not built" >&2; exit 1; }
done
[ -x node_modules/node/bin/node ] || { echo "pack: node_modules/node/bin/node missing: run npm ci" >&2; exit 1; }
[ -f node_modules/webgpu/dist/linux-x64/dawn.node ] || { echo "pack: webgpu's linux-x64 dawn.node missing: run npm ci" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
app="$stage/app"
mkdir -p "$app/node_modules/@tensorflow" "$app/dist"

for pkg in tfjs tfjs-core tfjs-backend-cpu tfjs-backend-webgl tfjs-layers tfjs-converter tfjs-data \
  tfjs-backend-wasm tfjs-backend-webgpu; do
  src="node_modules/@tensorflow/$pkg"
  dst="$app/node_modules/@tensorflow/$pkg"
  main=$(node -p "require('./$src/package.json').main")
  mkdir -p "$dst/$(dirname "$main")"
  cp "$src/package.json" "$dst/"
  cp "$src/$main" "$dst/$main"
done
cp node_modules/@tensorflow/tfjs-backend-wasm/dist/*.wasm "$app/node_modules/@tensorflow/tfjs-backend-wasm/dist/"
# Runtime dependencies of the tfjs bundles (require() calls in their main files).
for pkg in seedrandom long node-fetch whatwg-url tr46 webidl-conversions; do
  cp -r "node_modules/$pkg" "$app/node_modules/"
done
mkdir -p "$app/node_modules/webgpu/dist/linux-x64"
cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$app/node_modules/webgpu/"
cp node_modules/webgpu/dist/linux-x64/* "$app/node_modules/webgpu/dist/linux-x64/"

for dir in dist/trainer-image/training dist/core/codec dist/bench/gpu; do
  mkdir -p "$app/$dir"
  find "$dir" -maxdepth 1 -name '*.js' ! -name '*.test.js' -exec cp {} "$app/$dir/" \;
done
printf '{\n  "name": "fedtrain-gpu-kit",\n  "private": true,\n  "type": "module"\n}\n' >"$app/package.json"

rm -rf "$KIT"
mkdir -p "$KIT/debs"
echo "pack: compressing the app and node (xz, a minute or two)" >&2
tar -C "$stage" -cf - app | xz -T0 -6 >"$KIT/app.tar.xz"
xz -T0 -6 -c node_modules/node/bin/node >"$KIT/node.xz"

packages=(libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
if ! (cd "$KIT/debs" && apt-get download "${packages[@]}" >/dev/null); then
  echo "pack: apt-get download failed; running apt-get update once and retrying" >&2
  apt-get update >/dev/null
  (cd "$KIT/debs" && apt-get download "${packages[@]}" >/dev/null)
fi
for package in "${packages[@]}"; do
  compgen -G "$KIT/debs/${package}_*.deb" >/dev/null || { echo "pack: $package.deb missing" >&2; exit 1; }
done

(cd "$KIT" && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum >SHA256SUMS)
total=$(du -sb "$KIT" | cut -f1)
du -ah "$KIT" | sort -k2 >&2
if [ "$total" -gt "$LIMIT_BYTES" ]; then
  echo "pack: the kit is $total bytes, over the 60 MiB limit" >&2
  exit 1
fi
echo "pack: wrote $KIT ($((total / 1024 / 1024)) MiB)"

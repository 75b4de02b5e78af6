#!/usr/bin/env bash
# cpphost.sh: build proxy-wasm-cpp-host (the host library Envoy embeds for Wasm) with the
# WAMR engine at the three commits Envoy pinned in its release eras, each linked with
# meshplug's driver (testenv/cpphost/driver), into a cache directory; print one directory
# per host (testenv/cpphost finds them there).
#
#   hack/cpphost.sh            # all three hosts
#   hack/cpphost.sh 52a0291    # one host
#
# Sources: $MESHPLUG_PROXY_WASM_SRC, a folder holding the archives named in
# hack/cpphost.sha256 (`.ci/run` points it at ../shared/third_party/proxy-wasm). Without
# it the same commits are fetched from their public GitHub repositories into
# ~/.cache/meshplug/proxy-wasm-src and archived with `git archive` like the shared
# copies. Either way every archive must match hack/cpphost.sha256 or nothing is built.
#
# Each host goes to ~/.cache/meshplug/cpphost-<commit> ($MESHPLUG_CPPHOST_CACHE replaces
# ~/.cache/meshplug). Its file `inputs` records the sha256 of the archives it was built
# from and of the driver's sources; when they match, nothing is rebuilt. WAMR and
# cpp-host's objects are kept across driver changes (only the driver is recompiled).
# Needs cmake, ninja, g++, libssl-dev, libabsl-dev, nlohmann-json3-dev (Debian). Cold,
# on 2 cores: about 1–2 minutes per host.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${MESHPLUG_CPPHOST_CACHE:-$HOME/.cache/meshplug}
sums=$root/hack/cpphost.sha256
driver_dir=$root/testenv/cpphost/driver
log() { echo "cpphost: $*" >&2; }

# host commit -> sdk commit, WAMR version (from each host's bazel/repositories.bzl).
declare -A SDK=([52a0291]=7465dee [3930b7b]=7465dee [63cb9c1]=95bb82c)
declare -A WAMR=([52a0291]=2.4.1 [3930b7b]=2.4.1 [63cb9c1]=2.1.1)
declare -A FULL=(
  [52a0291]=52a02917b301c679ff43565064cffd2c3c750f6d
  [3930b7b]=3930b7b9a098d4ffc854e1fcf5fa07c9875e58c4
  [63cb9c1]=63cb9c1a40d8e6382d3f302721e09b8c45466661
  [7465dee]=7465dee8b2953beebff99f6dc3720ad0c79bab99
  [95bb82c]=95bb82ce45c41d9100fd1ec15d2ffc67f7f3ceee
  [2.4.1]=WAMR-2.4.1
  [2.1.1]=WAMR-2.1.1
)
hosts=("$@")
((${#hosts[@]})) || hosts=(52a0291 3930b7b 63cb9c1)

for tool in cmake ninja g++ sha256sum; do
  command -v "$tool" >/dev/null || { log "$tool is not installed (Debian: cmake ninja-build g++ libssl-dev libabsl-dev nlohmann-json3-dev)"; exit 1; }
done

# fetch_archive NAME: without MESHPLUG_PROXY_WASM_SRC, make NAME.tar.gz from the public
# repository the way the shared copies were made (git archive of the commit, WAMR
# trimmed to what the build reads).
fetch_archive() {
  local name=$1 dest=$2 repo ref prefix paths=()
  case $name in
  proxy-wasm-cpp-host-*) repo=https://github.com/proxy-wasm/proxy-wasm-cpp-host ref=${FULL[${name##*-}]} ;;
  proxy-wasm-cpp-sdk-*) repo=https://github.com/proxy-wasm/proxy-wasm-cpp-sdk ref=${FULL[${name##*-}]} ;;
  wamr-*) repo=https://github.com/bytecodealliance/wasm-micro-runtime ref=${FULL[${name#wamr-}]}
    paths=(CMakeLists.txt LICENSE ATTRIBUTIONS.md build-scripts core) ;;
  esac
  prefix=$name/
  local git=$dest/$name.git
  log "fetching $name from $repo"
  [[ -d $git ]] || git clone --quiet --bare --filter=blob:none "$repo" "$git"
  git -C "$git" fetch --quiet origin "$ref" 2>/dev/null || true
  git -C "$git" archive --format=tar.gz --prefix="$prefix" -o "$dest/$name.tar.gz" "$ref" "${paths[@]}"
}

src=${MESHPLUG_PROXY_WASM_SRC:-}
if [[ -z $src ]]; then
  src=$cache/proxy-wasm-src
  mkdir -p "$src"
fi

# archive NAME: the verified path of NAME.tar.gz (refuses on a checksum mismatch).
archive() {
  local name=$1 f want got
  f=$src/$name.tar.gz
  if [[ ! -f $f && -z ${MESHPLUG_PROXY_WASM_SRC:-} ]]; then
    fetch_archive "$name" "$src"
  fi
  [[ -f $f ]] || { log "$f is missing (MESHPLUG_PROXY_WASM_SRC=${MESHPLUG_PROXY_WASM_SRC:-unset})"; return 1; }
  want=$(awk -v n="$name.tar.gz" '$2 == n {print $1}' "$sums")
  got=$(sha256sum "$f" | cut -d' ' -f1)
  if [[ -z $want || $want != "$got" ]]; then
    log "refusing $f: sha256 $got, hack/cpphost.sha256 wants ${want:-nothing}"
    return 1
  fi
  echo "$f"
}

driver_hash=$(cat "$driver_dir"/*.cc "$0" | sha256sum | cut -d' ' -f1)

build_host() {
  local h=$1 sdk=${SDK[$1]} wv=${WAMR[$1]}
  [[ -n $sdk ]] || { log "unknown host commit $h (known: ${!SDK[*]})"; return 1; }
  local dir=$cache/cpphost-$h
  local host_a sdk_a wamr_a
  host_a=$(archive "proxy-wasm-cpp-host-$h") && sdk_a=$(archive "proxy-wasm-cpp-sdk-$sdk") && wamr_a=$(archive "wamr-$wv") || return 1
  local lib_inputs inputs
  lib_inputs=$(sha256sum "$host_a" "$sdk_a" "$wamr_a" | cut -d' ' -f1 | tr '\n' ' ')
  inputs="$lib_inputs driver=$driver_hash"
  if [[ -x $dir/meshplug-cpphost && -f $dir/inputs && $(cat "$dir/inputs") == "$inputs" ]]; then
    log "cached in $dir"
    echo "$dir"
    return 0
  fi
  local t0=$SECONDS
  mkdir -p "$dir"
  if [[ ! -f $dir/lib/inputs || $(cat "$dir/lib/inputs") != "$lib_inputs" ]]; then
    rm -rf "$dir/src" "$dir/lib" "$dir/inputs"
    mkdir -p "$dir/src" "$dir/lib/obj"
    tar xzf "$host_a" -C "$dir/src"
    tar xzf "$sdk_a" -C "$dir/src"
    tar xzf "$wamr_a" -C "$dir/src"
    local hs=$dir/src/proxy-wasm-cpp-host-$h ws=$dir/src/wamr-$wv ss=$dir/src/proxy-wasm-cpp-sdk-$sdk
    # cpp-host's Bazel build applies this patch to WAMR (repositories.bzl `patches`).
    if grep -q 'wamr.patch' "$hs/bazel/repositories.bzl"; then
      log "$h: applying bazel/external/wamr.patch to WAMR $wv"
      patch -s -d "$ws" -p1 <"$hs/bazel/external/wamr.patch"
    fi
    local target=vmlib
    grep -q 'add_library *(iwasm_static' "$ws/CMakeLists.txt" && target=iwasm_static
    log "$h: building WAMR $wv ($target)"
    # The flags of cpp-host's bazel/external/wamr.BUILD (interpreter, no WASI).
    cmake -S "$ws" -B "$dir/lib/wamr" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DWAMR_BUILD_INTERP=1 -DWAMR_BUILD_FAST_INTERP=1 -DWAMR_BUILD_AOT=0 -DWAMR_BUILD_JIT=0 \
      -DWAMR_BUILD_SIMD=0 -DWAMR_BUILD_LIBC_WASI=0 -DWAMR_BUILD_LIBC_BUILTIN=0 \
      -DWAMR_BUILD_BULK_MEMORY=1 -DWAMR_BUILD_REF_TYPES=1 -DWAMR_BUILD_TAIL_CALL=1 \
      -DWAMR_BUILD_MULTI_MODULE=0 -DWAMR_BUILD_CUSTOM_NAME_SECTION=1 \
      -DWAMR_BUILD_LOAD_CUSTOM_SECTION=1 -DWAMR_BUILD_DUMP_CALL_STACK=1 \
      -DWAMR_BUILD_WASM_CACHE=0 >"$dir/lib/wamr.log" 2>&1 ||
      { tail -20 "$dir/lib/wamr.log" >&2; return 1; }
    ninja -C "$dir/lib/wamr" "$target" >>"$dir/lib/wamr.log" 2>&1 || { tail -20 "$dir/lib/wamr.log" >&2; return 1; }
    cp "$(find "$dir/lib/wamr" -maxdepth 1 -name "lib*.a" | head -1)" "$dir/lib/libvmlib.a"
    log "$h: compiling cpp-host base_lib + wamr_lib"
    # Third-party code: warnings are theirs (-w), not ours.
    local srcs=(bytecode_util context exports hash pairs_util shared_data shared_queue signature_util vm_id_handle wasm wamr/wamr)
    printf '%s\n' "${srcs[@]}" | xargs -P "$(nproc)" -I{} sh -c \
      'g++ -std=c++17 -O2 -w -fPIC -DPROXY_WASM_HAS_RUNTIME_WAMR -DPROXY_WASM_HOST_ENGINE_WAMR \
        -I"$1" -I"$2" -I"$3/core/iwasm/include" -c "$1/src/{}.cc" -o "$4/$(echo {} | tr / _).o"' \
      _ "$hs" "$ss" "$ws" "$dir/lib/obj" 2>"$dir/lib/cpphost.log" || { tail -20 "$dir/lib/cpphost.log" >&2; return 1; }
    echo "$lib_inputs" >"$dir/lib/inputs"
  fi
  local hs=$dir/src/proxy-wasm-cpp-host-$h ws=$dir/src/wamr-$wv ss=$dir/src/proxy-wasm-cpp-sdk-$sdk
  log "$h: compiling the driver"
  # Our code: warnings are errors; cpp-host's headers are -isystem.
  g++ -std=c++17 -O2 -Wall -Wextra -Werror -DPROXY_WASM_HAS_RUNTIME_WAMR -DPROXY_WASM_HOST_ENGINE_WAMR \
    -DMESHPLUG_CPPHOST_COMMIT="\"$h\"" -isystem "$hs" -isystem "$ss" \
    "$driver_dir"/driver.cc "$dir"/lib/obj/*.o "$dir/lib/libvmlib.a" -lcrypto -lpthread -lm -ldl \
    -o "$dir/meshplug-cpphost.tmp"
  mv "$dir/meshplug-cpphost.tmp" "$dir/meshplug-cpphost"
  echo "$inputs" >"$dir/inputs"
  log "$h: built in $((SECONDS - t0)) s"
  echo "$dir"
}

for h in "${hosts[@]}"; do
  build_host "$h"
done

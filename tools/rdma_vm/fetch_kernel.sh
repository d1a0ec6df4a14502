#!/bin/bash
# Fetch a Debian kernel that has soft-RoCE (rdma_rxe) and keep only what the
# RDMA test VM boots: vmlinuz and the modules below, with their
# dependencies, in load order. The package is downloaded, never installed.
#
#   tools/rdma_vm/fetch_kernel.sh CACHE_DIR
#
# Prints the kernel directory (CACHE_DIR/<package>) on stdout; it holds
#   vmlinuz        the kernel image
#   modules/NN_name.ko   modules to insmod in file-name order
#   version        the package name and version it came from
# A directory that is already complete is reused without a download.
# Exit status: 0 done; 3 nothing to fetch here (no apt lists, no package,
# download refused), with one line saying why; 1 the package was unusable.
#
# Environment: ST_RDMA_VM_KERNEL_PKG overrides the package
# (default: what linux-image-amd64 depends on, e.g. linux-image-6.1.0-56-amd64).
set -u -o pipefail

cache=${1:?usage: fetch_kernel.sh CACHE_DIR}
# The modules the VM loads by name; their `depends=` are followed. crc32_generic
# is not a hard dependency of rdma_rxe (it asks the crypto API for "crc32" at
# run time, and the VM has no modprobe to load it on demand), so it is named.
WANT="crc32_generic ib_core ib_uverbs udp_tunnel ip6_udp_tunnel rdma_rxe dummy"

skip() { echo "$*" >&2; exit 3; }

pkg=${ST_RDMA_VM_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
    command -v apt-cache >/dev/null || skip "no apt-cache to resolve a kernel package"
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
          awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$pkg" ] || skip "apt offers no linux-image-amd64 (run apt-get update)"
fi
case "$pkg" in linux-image-*) ;; *) echo "fetch_kernel: '$pkg' is not a linux-image package" >&2; exit 1;; esac

dir=$cache/$pkg
if [ -s "$dir/vmlinuz" ] && [ -s "$dir/version" ] && ls "$dir"/modules/*rdma_rxe.ko >/dev/null 2>&1; then
    echo "$dir"
    exit 0
fi

mkdir -p "$cache" || exit 1
cache=$(cd "$cache" && pwd) || exit 1
dir=$cache/$pkg
tmp=$(mktemp -d "$cache/.fetch.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# apt-get download runs as the _apt user when it can, which cannot write
# into a directory it does not own; the sandbox is not worth a chmod here.
(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >"$tmp/apt.log" 2>&1) ||
    skip "apt-get download $pkg failed: $(tail -1 "$tmp/apt.log")"
deb=$(ls "$tmp"/*.deb 2>/dev/null | head -1)
[ -n "$deb" ] || skip "apt-get download $pkg produced no .deb"

mkdir "$tmp/x"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards './boot/vmlinuz-*' './lib/modules/*' ||
    { echo "fetch_kernel: cannot unpack $deb" >&2; exit 1; }
kimg=$(ls "$tmp"/x/boot/vmlinuz-* 2>/dev/null | head -1)
mroot=$(ls -d "$tmp"/x/lib/modules/*/ 2>/dev/null | head -1)
[ -n "$kimg" ] && [ -n "$mroot" ] || { echo "fetch_kernel: $pkg has no vmlinuz or modules" >&2; exit 1; }

# name -> file, with '-' and '_' the same in module names, as the kernel has it
declare -A path
while IFS= read -r f; do
    b=${f##*/}
    b=${b%%.ko*}
    path[${b//-/_}]=$f
done < <(find "$mroot" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst')

# a module's dependencies, from the depends= string of its .modinfo section
modinfo_depends() {
    local f=$1
    case "$f" in
        *.xz) xz -dc "$f" ;;
        *.zst) zstd -dcq "$f" ;;
        *) cat "$f" ;;
    esac | tr '\0' '\n' | sed -n 's/^depends=//p' | head -1 | tr ',' ' '
}

builtin=" $(sed 's|.*/||; s|\.ko.*||; s|-|_|g' "$mroot/modules.builtin" 2>/dev/null | tr '\n' ' ') "
order=()
declare -A seen
visit() { # depth first: dependencies before the module
    local m=${1//-/_}
    [ -n "${seen[$m]:-}" ] && return 0
    seen[$m]=1
    case "$builtin" in *" $m "*) return 0;; esac
    local f=${path[$m]:-}
    [ -n "$f" ] || { echo "fetch_kernel: $pkg has no module $m" >&2; return 1; }
    local d
    for d in $(modinfo_depends "$f"); do visit "$d" || return 1; done
    order+=("$m")
}
for m in $WANT; do visit "$m" || exit 1; done

out=$tmp/out
mkdir -p "$out/modules"
cp "$kimg" "$out/vmlinuz" || exit 1
n=0
for m in "${order[@]}"; do
    n=$((n + 1))
    f=${path[$m]}
    dst=$out/modules/$(printf '%02d' $n)_$m.ko
    case "$f" in
        *.xz) xz -dc "$f" >"$dst" ;;
        *.zst) zstd -dcq "$f" >"$dst" ;;
        *) cp "$f" "$dst" ;;
    esac || { echo "fetch_kernel: cannot unpack module $m" >&2; exit 1; }
done
echo "$(basename "$deb" .deb) modules: ${order[*]}" >"$out/version"
rm -rf "$dir"
mv "$out" "$dir" || exit 1
echo "$dir"

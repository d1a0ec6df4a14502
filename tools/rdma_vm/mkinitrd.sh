#!/bin/bash
# Build the RDMA test VM's initramfs: busybox-static, the kernel modules
# from fetch_kernel.sh, rdma-core user space (libibverbs with the rxe
# provider, the `rdma` tool), the test binaries with every shared library
# they load, and tools/rdma_vm/init.sh as /init.
#
#   tools/rdma_vm/mkinitrd.sh KERNEL_DIR OUT.cpio.gz BINARY...
#
# The binaries land in /t under their base names. Exit 0 with OUT written;
# 3 (one line why) when a host piece is missing (busybox-static, the rxe
# provider, rdma); 1 on other errors.
set -u -o pipefail

kdir=${1:?usage: mkinitrd.sh KERNEL_DIR OUT.cpio.gz BINARY...}
out=${2:?usage: mkinitrd.sh KERNEL_DIR OUT.cpio.gz BINARY...}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "$*" >&2; exit 3; }

busybox=""
for b in /bin/busybox /usr/bin/busybox; do
    if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then busybox=$b; break; fi
done
[ -n "$busybox" ] || skip "no static busybox (apt-get install busybox-static)"
multiarch=/usr/lib/x86_64-linux-gnu
provider=$(ls "$multiarch"/libibverbs/librxe-rdmav*.so 2>/dev/null | head -1)
[ -n "$provider" ] && [ -f /etc/libibverbs.d/rxe.driver ] ||
    skip "no rxe verbs provider (apt-get install ibverbs-providers)"
rdma=$(command -v rdma || ls /sbin/rdma /usr/sbin/rdma 2>/dev/null | head -1)
[ -n "$rdma" ] || skip "no rdma tool (apt-get install iproute2)"
ls "$kdir"/modules/*.ko >/dev/null 2>&1 || { echo "mkinitrd: no modules in $kdir" >&2; exit 1; }

root=$(mktemp -d "${TMPDIR:-/tmp}/strait-rdma-initrd.XXXXXX") || exit 1
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp,mods,t,etc/libibverbs.d,lib64,lib/x86_64-linux-gnu} \
    "$root$multiarch/libibverbs" || exit 1
cp "$busybox" "$root/bin/busybox" || exit 1
for a in $("$busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
done
cp "$kdir"/modules/*.ko "$root/mods/" || exit 1
cp "$provider" "$root$multiarch/libibverbs/" || exit 1
cp /etc/libibverbs.d/rxe.driver "$root/etc/libibverbs.d/" || exit 1
cp "$rdma" "$root/bin/rdma" || exit 1
for b in "$@"; do
    [ -x "$b" ] || { echo "mkinitrd: $b is not an executable" >&2; exit 1; }
    cp "$b" "$root/t/" || exit 1
done

# Shared libraries: what ldd resolves for every binary and the provider
# (libibverbs dlopens the provider, so ldd of the tests does not see it),
# plus libgcc_s, which glibc dlopens for thread cancellation and unwinding.
libs=$( { for f in "$root"/t/* "$root/bin/rdma" "$provider"; do ldd "$f"; done; } |
        awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' | sort -u)
gcc_s=$(ls /lib/x86_64-linux-gnu/libgcc_s.so.1 "$multiarch"/libgcc_s.so.1 2>/dev/null | head -1)
for l in $libs $gcc_s; do
    case "$l" in
        /lib64/*) d=$root/lib64 ;;
        *) d=$root/lib/x86_64-linux-gnu ;; # one directory: /lib and /usr/lib are one on merged-/usr hosts
    esac
    cp -L "$l" "$d/" || exit 1
done

cp "$here/init.sh" "$root/init" && chmod +x "$root/init" || exit 1
tmpout=$out.tmp.$$
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$tmpout" && mv "$tmpout" "$out" ||
    { rm -f "$tmpout"; echo "mkinitrd: cannot write $out" >&2; exit 1; }

#!/usr/bin/env bash
# Boots Debian's own kernel (linux-image-amd64, which has rdma_rxe, drbd, nbd, netem) in a qemu
# TCG guest that sees this machine's root filesystem read-only over 9p, runs GUEST_SCRIPT inside
# it (chrooted into the host fs, tmpfs on /tmp and /run) and copies its output to OUT_DIR.
# Usage: scripts/qemu-guest.sh GUEST_SCRIPT OUT_DIR     Root. Needs: qemu-system-x86
#        busybox-static cpio kmod, and the Debian registry once (the kernel .deb is cached).
# Recipe from /work/shared/probes/08-qemu-kernel-peers.sh (FINDINGS.md §7): nested KVM does not
# work on the CI VM, so this is software emulation (about a minute to boot and run).
set -euo pipefail
GUEST_SCRIPT=$(realpath "$1")
REPO=$(realpath "$(dirname "$0")/..")
OUT_DIR=$2
CACHE=${TANDEM_KERNEL_CACHE:-/var/tmp/tandem-kernel}
mkdir -p "$CACHE" "$OUT_DIR"
cd "$CACHE"
PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
KVER=${PKG#linux-image-}
if [ ! -f "kx/boot/vmlinuz-$KVER" ]; then
  apt-get download "$PKG" >/dev/null
  rm -rf kx
  dpkg-deb -x "$PKG"_*.deb kx
  depmod -b "$CACHE/kx" "$KVER"
fi
if [ ! -f "initrd-$KVER-keep.gz" ]; then
  rm -rf initrd
  mkdir -p initrd/{bin,proc,sys,dev,host,out,lib/modules}
  cp /bin/busybox initrd/bin/busybox
  for m in virtio_pci 9pnet_virtio 9p virtio_net dummy crc32_generic rdma_rxe ib_uverbs rdma_ucm; do
    modprobe -d "$CACHE/kx" -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
  done | awk '!seen[$0]++' | while read -r f; do
    cp "$f" initrd/lib/modules/
    basename "$f" >>initrd/modules.order
  done
  cat >initrd/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m 2>/dev/null || echo "insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro host /host
mount -t 9p -o trans=virtio,version=9p2000.L out /out
for d in proc sys dev; do mount --bind /$d /host/$d; done
mkdir -p /orig/tmp /orig/run && mount --bind /host/tmp /orig/tmp && mount --bind /host/run /orig/run
for d in tmp run; do mount -t tmpfs tmpfs /host/$d; done
mkdir -p /host/tmp/out && mount --bind /out /host/tmp/out
if [ -f /out/.keep ]; then while read -r p; do mkdir -p "/host$p" && mount --bind "/orig$p" "/host$p"; done < /out/.keep; fi
chroot /host /bin/bash /tmp/out/guest.sh > /out/guest.log 2>&1
echo "guest.sh rc=$?" >> /out/guest.log
sync; poweroff -f
INIT
  chmod +x initrd/init
  (cd initrd && find . | cpio -o -H newc 2>/dev/null | gzip -1 >"../initrd-$KVER-keep.gz")
fi
SHARE=$(mktemp -d /tmp/tandem-guest.XXXXXX)
trap 'rm -rf "$SHARE"' EXIT
cp "$GUEST_SCRIPT" "$SHARE/guest.sh"
# The guest covers /tmp and /run with its own tmpfs: a checkout there (a CI clone) is bound back.
case "$REPO" in /tmp|/tmp/*|/run|/run/*) echo "$REPO" >"$SHARE/.keep" ;; esac
timeout "${TANDEM_GUEST_TIMEOUT_S:-900}" qemu-system-x86_64 -accel tcg -m 2048 -smp 2 -nographic -no-reboot \
  -kernel "kx/boot/vmlinuz-$KVER" -initrd "initrd-$KVER-keep.gz" -append "console=ttyS0 panic=-1 quiet" \
  -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$SHARE",mount_tag=out,security_model=none \
  -nic none >"$OUT_DIR/console.log" 2>&1 || echo "qemu exited with $?" >>"$OUT_DIR/console.log"
cp "$SHARE/guest.log" "$OUT_DIR/guest.log" 2>/dev/null || echo "no guest.log" >"$OUT_DIR/guest.log"

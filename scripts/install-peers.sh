#!/usr/bin/env bash
# Installs the Debian packages Tandem's tests talk to (real NBD clients, drbd-utils as the
# config and metadata oracle, fio, network tools). Root; idempotent; only installs what is missing.
set -euo pipefail
PKGS=(
  drbd-utils util-linux xxd              # drbdadm/drbdmeta oracles, losetup
  nbdkit libnbd-bin qemu-utils fio       # NBD peers: nbdinfo nbdcopy nbdfuse, qemu-io/qemu-img, fio (gnutls: nbds://, tls-creds)
  openssl                                # test x509 PKIs (test/support/openssl-pki.ts)
  fuse3 e2fsprogs                        # nbdfuse -> loop -> ext4
  iproute2 nftables iptables iperf3      # namespaces, fault injection, transport baseline
  libfabric-dev libfabric-bin            # fabric transport addon (native/), fi_info/fi_pingpong
  build-essential                        # gcc for bench/native/fabric_bw.c (native msg/rma bandwidth)
  qemu-system-x86 busybox-static cpio kmod rdma-core ibverbs-providers ibverbs-utils  # Soft-RoCE guest (fabric verbs)
  qemu-system-common time                # bench: qemu-storage-daemon mirror peer, GNU time for nbdcopy
  qemu-system-x86 busybox-static cpio kmod nbd-client  # test/support/guest.ts: kernel peers in a qemu guest
  pacemaker pacemaker-cli-utils corosync crmsh  # test/pacemaker: a real two-node cluster in namespaces
  resource-agents libxml2-utils          # ocf-tester (and the xmllint it validates meta-data with)
  prometheus                             # promtool and a real server scraping tandemd --metrics-address
  systemd                                # systemd-analyze verify on contrib/systemd units
  openssl                                # TLS replication tests and bench: CA and node certificates
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-peers: all test peers present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-peers: missing ${missing[*]}; run as root (apt-get install) to install them" >&2
  exit 1
fi
echo "install-peers: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -o DPkg::Lock::Timeout=600 >/dev/null
apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
echo "install-peers: done"

# Runs inside the qemu guest (scripts/qemu-guest.sh): Soft-RoCE (rdma_rxe) on a dummy netdev,
# then the transport compliance suite over the fabric transport's verbs provider (rdma-cm).
# REPO is substituted by the test that starts the guest.
set -u
ip link set lo up
ip link add d0 type dummy
ip addr add 198.51.100.1/24 dev d0
ip link set d0 up
rdma link add rxe0 type rxe netdev d0 || { echo "rdma link add failed"; exit 2; }
ibv_devices
fi_info -p verbs -t FI_EP_MSG -s 198.51.100.1 | grep -E 'provider|domain' | head -4
cd REPO
FABRIC_TEST_PROVIDERS=verbs FABRIC_TEST_HOST=198.51.100.1 \
  node --test --test-reporter=spec dist/test/transport/fabric/compliance.test.js

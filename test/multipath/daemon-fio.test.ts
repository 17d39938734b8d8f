// Multipath under a real write load (issue 8's acceptance test): two tandemd processes in two
// network namespaces, a connection with two paths, "interconnect" (203.0.113.0/24, first, so
// preferred) and "ethernet" (198.51.100.0/24); fio writes with verify through the Primary's
// NBD export while the test cuts the interconnect (ip link down, alternately on the Primary's
// side and, silently, on the peer's side) and restores it. fio sees no error, each cut is a
// failover and each restore a failback (status counters fed by the session's path events), no
// resync happens and both disks end identical. The completion-latency stall around each switch
// is measured from fio's latency log (epoch times) against the switch times of the daemon's
// events stream and printed (docs/TRANSPORTS.md records it).
import { test } from 'node:test';
import { requireRoot } from '../support/netns.js';
import { requirePeers } from '../support/peers.js';
import { cutsUnderFio } from './daemon-fio-harness.js';

test('fio with verify through 20 interconnect cuts: no error, failover and back, no resync', async (t) => {
  if (!requireRoot(t) || !requirePeers(t, 'fio', 'fio')) return;
  await cutsUnderFio(t, { cycles: 20 });
});

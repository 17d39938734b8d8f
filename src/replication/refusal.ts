// The engine's own one-line text for each admin refusal (what logs and engine tests see). The
// daemon builds the operator's explanation from the code and details, not from this text.
import type { AdminRefusal, ResizeFailure } from './types.js';

export function refusalMessage(r: AdminRefusal): string {
  switch (r.code) {
    case 'handshaking':
      return 'a handshake with a peer is in progress; retry';
    case 'unknown-peer':
      return `unknown peer ${r.peer}`;
    case 'no-disk':
      return 'no local disk';
    case 'disk-attached':
      return 'a disk is already attached';
    case 'not-established':
      return 'needs an established connection';
    case 'sync-source-not-up-to-date':
      return 'the sync source must be UpToDate';
    case 'primary-invalidate':
      return 'a Primary cannot invalidate its own data';
    case 'primary-needs-up-to-date-peer':
      return r.action === 'detach'
        ? 'a Primary needs an UpToDate peer to detach'
        : 'a Primary attaches only while connected to an UpToDate peer';
    case 'promotion-in-progress':
      return 'a promotion is already in progress';
    case 'peer-primary':
      return r.voted
        ? 'a peer is Primary or becoming Primary'
        : 'the peer is Primary and allow-two-primaries is off';
    case 'no-up-to-date-data':
      return 'no local disk and no UpToDate peer';
    case 'disk-not-up-to-date':
      return r.forceable ? `disk is ${r.disk}; UpToDate needed (or --force)` : `disk is ${r.disk}`;
    case 'resync-running':
      return r.intoThisNode ? 'a resync into this node is running' : 'a resync is running';
    case 'io-in-flight':
      return 'device is busy (I/O in flight)';
    case 'resize-in-progress':
      return 'a resize is already in progress';
    case 'resize-disk-not-up-to-date':
      return `disk is ${r.disk}; resize needs UpToDate data here`;
    case 'resize-peers-apart':
      return r.alone
        ? `peer ${r.peers.join(', ')} is not connected; growing alone needs an explicit size`
        : `peer ${r.peers.join(', ')} is not connected; resize needs every peer connected (or none)`;
    case 'resize-peer-busy':
      return `a resync or verify with peer ${r.peer} is running`;
    case 'resize-peer-not-up-to-date':
      return `peer ${r.peer} is ${r.disk}; resize needs UpToDate peers`;
    case 'resize-peer-primary':
      return `peer ${r.peer} is Primary; resize runs on the Primary`;
    case 'resize-does-not-fit':
      return `--size ${r.requestedBytes} bytes does not fit: ${r.smallest} has room for ${r.fitBytes} bytes`;
    case 'resize-shrink':
      return r.requestedBytes !== null
        ? `--size ${r.requestedBytes} bytes is smaller than the device (${r.currentBytes} bytes); shrinking is not supported`
        : `${r.smallest} has room for only ${r.fitBytes} bytes, less than the device (${r.currentBytes} bytes); shrinking is not supported`;
    case 'resize-failed':
      return r.failures.map((f) => resizeFailureText(f, r.targetBytes)).join('; ');
    case 'resize-peer-lost':
      return r.grew
        ? `peer ${r.peer} disconnected during the resize and may have grown to ${r.targetBytes} bytes; if the sizes now differ, run resize --size ${r.targetBytes} on the smaller node before connecting`
        : `peer ${r.peer} disconnected during the resize; nothing changed, retry once connected`;
    case 'resize-local-grow-failed':
      return (
        `the local disk could not grow to ${r.targetBytes} bytes (see the log)` +
        (r.peersDisconnected ? '; the peers that grew were disconnected' : '')
      );
    case 'protocol-change-connected':
      return 'the protocol changes only while disconnected';
    case 'option-out-of-range':
      return `${r.option} ${r.value} out of range`;
    case 'no-verify-alg':
      return 'no verify-alg configured';
    case 'verify-not-established':
      return 'verify needs an established connection between UpToDate disks';
  }
}

export function resizeFailureText(f: ResizeFailure, targetBytes: number): string {
  return f.step === 'measure'
    ? `${f.who} could not measure its backing device (see its log)`
    : `${f.who} could not grow to ${targetBytes} bytes (see its log)`;
}

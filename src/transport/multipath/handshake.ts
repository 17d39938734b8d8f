// The path handshake of a multipath session, on a fresh path channel's CONTROL stream:
// HELLO (open a session or join a path to one) → WELCOME (nonce, proof) → PROOF → READY.
// Both sides prove the session key with an HMAC over both nonces and a role byte, so a
// reflected or replayed proof fails; neither side sends anything else until READY.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { MULTIPATH_NONCE_BYTES } from '../../limits.js';
import type { Clock } from '../../platform/clock.js';
import { AsyncQueue } from '../../util/async-queue.js';
import { ConnectionError, PeerAuthError, ProtocolError } from '../../util/errors.js';
import type { Channel, Message } from '../types.js';
import {
  MP_HELLO,
  MP_PROOF,
  MP_READY,
  MP_REFUSE,
  MP_WELCOME,
  MP_WIRE_VERSION,
  decodeHello,
  decodeProof,
  decodeRefuse,
  decodeWelcome,
  encodeHello,
  encodeRefuse,
  encodeWelcome,
  type MpHello,
  type MpRefuseCode,
  type NextSeqs,
} from './wire.js';

export interface KeyMaterial {
  readonly alg: string;
  readonly secret: Buffer;
}

/** The session key: from the shared secret, the session id and both open nonces. */
export function deriveSessionKey(
  km: KeyMaterial,
  sessionId: Buffer,
  nonceI: Buffer,
  nonceA: Buffer,
): Buffer {
  return createHmac(km.alg, km.secret)
    .update('tandem-multipath-session')
    .update(sessionId)
    .update(nonceI)
    .update(nonceA)
    .digest();
}

function proof(alg: string, key: Buffer, role: 'I' | 'A', first: Buffer, second: Buffer): Buffer {
  return createHmac(alg, key).update(role).update(first).update(second).digest();
}

const same = (a: Buffer, b: Buffer): boolean => a.length === b.length && timingSafeEqual(a, b);

/** A refusal received from the peer; `code` says whether retrying can help. */
export class SessionRefused extends ConnectionError {
  constructor(
    readonly refuseCode: MpRefuseCode,
    message: string,
  ) {
    super(message);
  }
}

/** Takes CONTROL messages of a path one at a time until the handshake's last one. */
class Reader {
  private readonly queue = new AsyncQueue<Message>();
  private readonly offClosed: () => void;
  private readonly timer;
  /** Called instead of queueing when the last handshake frame arrives (it takes the channel). */
  onLast: (() => void) | null = null;

  constructor(
    private readonly ch: Channel,
    clock: Clock,
    timeoutMs: number,
    private readonly lastType: number,
  ) {
    ch.setReceiver((m) => {
      // After the last handshake frame, later frames belong to the session. They may follow
      // in the same burst, so the session takes over synchronously (onLast) when it can;
      // else they stay queued in the channel until it sets its receiver.
      if (m.type === this.lastType && this.onLast !== null && m.stream === 'control') {
        this.onLast();
        return;
      }
      if (m.type === this.lastType || m.type === MP_REFUSE) ch.setReceiver(null);
      if (m.stream !== 'control') {
        this.abort(new ProtocolError('session handshake: DATA before the handshake ended'));
        return;
      }
      this.queue.push(m);
    });
    this.offClosed = ch.on('closed', (info) =>
      this.abort(new ConnectionError(`path closed during the session handshake (${info.reason})`)),
    );
    this.timer = clock.setTimeout(
      () => this.abort(new ConnectionError(`session handshake not done in ${timeoutMs} ms`)),
      timeoutMs,
    );
  }

  async expect(type: number, what: string): Promise<Buffer> {
    const m = await this.next();
    if (m.type === MP_REFUSE) {
      const r = decodeRefuse(m.payload);
      if (!r.ok) throw new ProtocolError(`session handshake: bad refusal: ${r.error}`);
      throw new SessionRefused(r.value.code, `peer refused the path: ${r.value.reason}`);
    }
    if (m.type !== type) {
      throw new ProtocolError(
        `session handshake: expected ${what}, got type 0x${m.type.toString(16)}`,
      );
    }
    return m.payload;
  }

  private next(): Promise<Message> {
    return this.queue.next();
  }

  abort(e: Error): void {
    this.queue.fail(e);
  }

  done(): void {
    this.timer.cancel();
    this.offClosed();
  }
}

export interface InitiatorParams {
  readonly kind: 'open' | 'join';
  readonly sessionId: Buffer;
  readonly loadBalance: boolean;
  readonly rank: number;
  /** For a join: the session key. For an open: the key material it is derived from. */
  readonly key: Buffer | KeyMaterial;
  readonly alg: string;
  readonly next: NextSeqs;
  readonly randomBytes: (n: number) => Buffer;
  readonly clock: Clock;
  readonly timeoutMs: number;
  /**
   * Called synchronously on READY, before any later frame is delivered: attach the channel to
   * the session here (set its receiver). Without it, later frames queue in the channel.
   */
  readonly onReady?: (r: HandshakeResult) => void;
}

export interface HandshakeResult {
  readonly key: Buffer;
  /** What the peer has received (an acknowledgement). */
  readonly peerNext: NextSeqs;
}

/** Runs the initiator side on `ch`; on failure the caller destroys the channel. */
export async function initiatePath(ch: Channel, p: InitiatorParams): Promise<HandshakeResult> {
  const reader = new Reader(ch, p.clock, p.timeoutMs, MP_READY);
  try {
    const nonceI = p.randomBytes(MULTIPATH_NONCE_BYTES);
    ch.send('control', MP_HELLO, [
      encodeHello({
        version: MP_WIRE_VERSION,
        kind: p.kind,
        loadBalance: p.loadBalance,
        rank: p.rank,
        sessionId: p.sessionId,
        nonce: nonceI,
        next: p.next,
      }),
    ]);
    const wr = decodeWelcome(await reader.expect(MP_WELCOME, 'welcome'));
    if (!wr.ok) throw new ProtocolError(`session handshake: ${wr.error}`);
    const w = wr.value;
    const key = Buffer.isBuffer(p.key)
      ? p.key
      : deriveSessionKey(p.key, p.sessionId, nonceI, w.nonce);
    if (!same(w.proof, proof(p.alg, key, 'A', nonceI, w.nonce))) {
      throw new PeerAuthError('session handshake: the peer does not know the session key');
    }
    const result: HandshakeResult = { key, peerNext: w.next };
    const ready = new Promise<void>((resolve) => {
      reader.onLast = () => {
        reader.done();
        if (p.onReady) p.onReady(result);
        else ch.setReceiver(null);
        resolve();
      };
    });
    ch.send('control', MP_PROOF, [proof(p.alg, key, 'I', w.nonce, nonceI)]);
    // A refusal or a close rejects expect(); READY resolves `ready` instead.
    await Promise.race([ready, reader.expect(MP_READY, 'ready')]);
    return result;
  } finally {
    reader.done();
  }
}

/** What the acceptor looks up once it has read a HELLO. */
export type HelloDecision =
  | {
      readonly ok: true;
      readonly key: Buffer | KeyMaterial;
      readonly next: NextSeqs;
      /** The HMAC hash of a joined session; @default the acceptor's */
      readonly alg?: string;
    }
  | { readonly ok: false; readonly code: MpRefuseCode; readonly reason: string };

export interface AcceptorParams {
  readonly alg: string;
  readonly randomBytes: (n: number) => Buffer;
  readonly clock: Clock;
  readonly timeoutMs: number;
  readonly decide: (hello: MpHello) => HelloDecision;
}

export interface AcceptResult extends HandshakeResult {
  readonly hello: MpHello;
}

/** We refused the path: the refusal is sent and the channel is closing gracefully. */
export class RefusedHere extends ProtocolError {
  constructor(
    readonly refuseCode: MpRefuseCode,
    message: string,
  ) {
    super(message);
  }
}

function refuse(ch: Channel, code: MpRefuseCode, reason: string): Error {
  if (ch.isOpen) {
    ch.send('control', MP_REFUSE, [encodeRefuse({ code, reason })]);
    void ch.close();
  }
  return new RefusedHere(code, reason);
}

/**
 * Runs the acceptor side. `first` is the HELLO already read by whoever dispatched the channel
 * (a listener reading first frames), or null to read it here.
 */
export async function acceptPath(
  ch: Channel,
  first: Message | null,
  p: AcceptorParams,
): Promise<AcceptResult> {
  const reader = new Reader(ch, p.clock, p.timeoutMs, MP_PROOF);
  try {
    const helloBytes =
      first !== null && first.type === MP_HELLO
        ? first.payload
        : await reader.expect(MP_HELLO, 'session hello');
    const hr = decodeHello(helloBytes);
    if (!hr.ok) throw refuse(ch, 'protocol', hr.error);
    const hello = hr.value;
    const d = p.decide(hello);
    if (!d.ok) throw refuse(ch, d.code, d.reason);
    const alg = d.alg ?? p.alg;
    const nonceA = p.randomBytes(MULTIPATH_NONCE_BYTES);
    const key = Buffer.isBuffer(d.key)
      ? d.key
      : deriveSessionKey(d.key, hello.sessionId, hello.nonce, nonceA);
    ch.send('control', MP_WELCOME, [
      encodeWelcome({
        next: d.next,
        nonce: nonceA,
        proof: proof(alg, key, 'A', hello.nonce, nonceA),
      }),
    ]);
    const pr = decodeProof(await reader.expect(MP_PROOF, 'proof'));
    if (!pr.ok) throw refuse(ch, 'protocol', pr.error);
    if (!same(pr.value, proof(alg, key, 'I', nonceA, hello.nonce))) {
      throw refuse(ch, 'auth-failed', 'session handshake: wrong proof (wrong shared-secret?)');
    }
    return { key, peerNext: hello.next, hello };
  } finally {
    reader.done();
  }
}

/** The acceptor's last frame; sent by the caller once the path is attached. */
export function sendReady(ch: Channel): void {
  ch.send('control', MP_READY, []);
}

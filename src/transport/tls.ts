// TLS pieces shared by the tcp transport and the connection manager: the STREAM_REFUSE payload
// (why a socket was refused before it became a channel), readable texts for OpenSSL's
// verification codes and handshake errors, and the check that a peer's certificate names the
// node it claims to be. Decoders never throw on bad bytes.
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { TCP_REFUSE_REASON_BYTES_MAX } from '../limits.js';
import { ConfigError } from '../util/errors.js';
import type { ChannelTls } from './types.js';

/** Why a socket was refused: TLS on one side only, or a certificate the sender does not accept. */
export type StreamRefuseCode = 'tls-required' | 'tls-unsupported' | 'cert-rejected';
const CODES: readonly StreamRefuseCode[] = ['tls-required', 'tls-unsupported', 'cert-rejected'];

export interface StreamRefusal {
  readonly code: StreamRefuseCode;
  readonly reason: string;
}

/** u8 code (1-based index in CODES) then the reason, UTF-8, cut to TCP_REFUSE_REASON_BYTES_MAX. */
export function encodeStreamRefuse(r: StreamRefusal): Buffer {
  const text = Buffer.from(r.reason, 'utf8').subarray(0, TCP_REFUSE_REASON_BYTES_MAX);
  return Buffer.concat([Buffer.of(CODES.indexOf(r.code) + 1), text]);
}

export function decodeStreamRefuse(
  b: Buffer,
): { ok: true; value: StreamRefusal } | { ok: false; error: string } {
  const code = CODES[(b[0] ?? 0) - 1];
  if (b.length < 1 || code === undefined) return { ok: false, error: 'bad stream refusal code' };
  if (b.length - 1 > TCP_REFUSE_REASON_BYTES_MAX)
    return { ok: false, error: 'stream refusal reason too long' };
  return { ok: true, value: { code, reason: b.subarray(1).toString('utf8') } };
}

/** What the peer's refusal means for this side, as one actionable sentence. */
export function describeRefusal(r: StreamRefusal): string {
  switch (r.code) {
    case 'tls-required':
      return `the peer requires TLS (net { tls yes; } there) and this node has tls no; no plaintext fallback (${r.reason})`;
    case 'tls-unsupported':
      return `the peer does not speak TLS (tls no there) and this node requires it; no plaintext fallback (${r.reason})`;
    case 'cert-rejected':
      return `the peer rejected this node's certificate: ${r.reason} (check tls-certificate here and tls-ca there)`;
  }
}

const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_CHAIN_TOO_LONG',
]);

/**
 * A certificate verification result (node:tls `authorizationError`, an OpenSSL X509_V_ERR name)
 * in words. `presented` false: the peer sent no certificate at all.
 */
export function describeVerifyError(
  code: string | Error | null | undefined,
  presented: boolean,
): string {
  if (!presented) return 'no certificate presented';
  const c = code instanceof Error ? ((code as NodeJS.ErrnoException).code ?? code.message) : code;
  if (c === undefined || c === null) return 'not verified';
  if (c === 'CERT_HAS_EXPIRED') return 'the certificate has expired (CERT_HAS_EXPIRED)';
  if (c === 'CERT_NOT_YET_VALID') return 'the certificate is not valid yet (CERT_NOT_YET_VALID)';
  if (c === 'CERT_REVOKED') return 'the certificate is revoked (CERT_REVOKED)';
  if (UNTRUSTED.has(c)) return `the certificate is not signed by a CA in tls-ca (${c})`;
  return `certificate verification failed (${c})`;
}

/** An OpenSSL handshake error without its file/line noise: the reason OpenSSL gives. */
export function describeTlsError(e: Error): string {
  const reason = (e as { reason?: unknown }).reason;
  const code = (e as NodeJS.ErrnoException).code;
  if (typeof reason === 'string' && reason !== '') return code ? `${reason} (${code})` : reason;
  return e.message.split('\n')[0] ?? e.message;
}

/** True when a PeerCertificate object holds a certificate (node:tls gives {} for none). */
export function hasCertificate(c: PeerCertificate | null | undefined): boolean {
  return c !== null && c !== undefined && Object.keys(c).length > 0 && c.raw !== undefined;
}

/**
 * Whether the peer's certificate names `name` (its `on HOST` name, or its IP for a floating
 * host): a DNS (or IP) subjectAltName, or the subject CN when there is no DNS name, with the
 * HTTPS rules of node:tls checkServerIdentity. Returns the problem, or null when it does.
 */
export function peerNameProblem(tls: ChannelTls, name: string): string | null {
  const cert = tls.peerCertificate;
  const err = checkServerIdentity(name, cert);
  if (err === undefined) return null;
  const cn = cert.subject?.CN;
  const san = cert.subjectaltname;
  return `the peer's certificate (CN=${String(cn ?? '-')}${san ? `, ${san}` : ''}) does not name '${name}'`;
}

/** For transports without TLS: the error refusing credentials (instead of running in clear). */
export function tlsRefusal(
  transport: string,
  o: { readonly tls?: unknown } | undefined,
): ConfigError | null {
  return o?.tls === undefined
    ? null
    : new ConfigError(`${transport}: TLS is supported on the tcp transport only`);
}

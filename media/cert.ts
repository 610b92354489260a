// Self-signed ECDSA P-256 certificates for `serverCertificateHashes`, built with WebCrypto and
// a few lines of DER (no openssl). Browsers accept such a certificate only if it is valid for
// at most 14 days, so the node renews it before expiry and publishes the hash of the next one
// ahead of time: a terminal that fetched the hashes before a switch still connects after it.
import { toBase64 } from "../src/bytes.ts";

const DAY_MS = 86_400_000;

export interface Certificate {
  certPem: string;
  keyPem: string;
  /** SHA-256 of the DER certificate, base64 (what `serverCertificateHashes` wants). */
  hash: string;
  notBefore: number;
  notAfter: number;
}

// --- minimal DER writer ---------------------------------------------------------------
function len(n: number): number[] {
  if (n < 0x80) return [n];
  const out: number[] = [];
  while (n > 0) { out.unshift(n & 0xff); n >>>= 8; }
  return [0x80 | out.length, ...out];
}
function tlv(tag: number, body: Uint8Array | number[]): Uint8Array {
  const b = body instanceof Uint8Array ? body : Uint8Array.from(body);
  const head = [tag, ...len(b.length)];
  const out = new Uint8Array(head.length + b.length);
  out.set(head);
  out.set(b, head.length);
  return out;
}
function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) { out.set(p, off); off += p.length; }
  return out;
}
const seq = (...parts: Uint8Array[]) => tlv(0x30, cat(...parts));
const set = (...parts: Uint8Array[]) => tlv(0x31, cat(...parts));
function oid(dotted: string): Uint8Array {
  const n = dotted.split(".").map(Number);
  const body = [40 * n[0]! + n[1]!];
  for (const v of n.slice(2)) {
    const bytes = [v & 0x7f];
    let x = Math.floor(v / 128);
    while (x > 0) { bytes.unshift(0x80 | (x & 0x7f)); x = Math.floor(x / 128); }
    body.push(...bytes);
  }
  return tlv(0x06, body);
}
function uint(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const v = bytes.subarray(i);
  return tlv(0x02, v[0]! & 0x80 ? cat(Uint8Array.of(0), v) : v);
}
function utcTime(ms: number): Uint8Array {
  const d = new Date(ms);
  const p = (x: number) => String(x).padStart(2, "0");
  const s = `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  return tlv(0x17, new TextEncoder().encode(s));
}
function name(cn: string): Uint8Array {
  return seq(set(seq(oid("2.5.4.3"), tlv(0x0c, new TextEncoder().encode(cn)))));
}
function ipBytes(ip: string): Uint8Array | undefined {
  const m = ip.split(".");
  if (m.length === 4 && m.every((x) => /^\d{1,3}$/.test(x) && Number(x) < 256)) return Uint8Array.from(m.map(Number));
  return undefined;
}

/** WebCrypto's ECDSA signature is r‖s; X.509 wants SEQUENCE { INTEGER r, INTEGER s }. */
function derSignature(raw: Uint8Array): Uint8Array {
  const half = raw.length / 2;
  return seq(uint(raw.subarray(0, half)), uint(raw.subarray(half)));
}

function pem(label: string, der: Uint8Array): string {
  const b64 = toBase64(der).replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

export interface CertOptions {
  /** DNS names and IPv4 addresses the certificate names. */
  hosts?: string[];
  /** Validity, ms; browsers refuse hash-pinned certificates valid for more than 14 days. */
  validityMs?: number;
  now?: number;
}

/** Makes a self-signed ECDSA P-256 certificate. */
export async function generateCertificate(opts: CertOptions = {}): Promise<Certificate> {
  const validityMs = opts.validityMs ?? 10 * DAY_MS;
  if (validityMs > 14 * DAY_MS) throw new RangeError("hash-pinned certificates must be valid for at most 14 days");
  const hosts = opts.hosts ?? ["localhost", "127.0.0.1"];
  const now = opts.now ?? Date.now();
  // Back-date a little so a terminal whose clock runs behind still accepts it.
  const notBefore = Math.floor(now / 1000) * 1000 - 60_000;
  const notAfter = notBefore + validityMs;
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0]! &= 0x7f;
  const sigAlg = seq(oid("1.2.840.10045.4.3.2")); // ecdsa-with-SHA256
  const generalNames = hosts.map((h) => {
    const ip = ipBytes(h);
    return ip ? tlv(0x87, ip) : tlv(0x82, new TextEncoder().encode(h));
  });
  const extensions = tlv(0xa3, seq(
    seq(oid("2.5.29.17"), tlv(0x04, seq(...generalNames))), // subjectAltName
    seq(oid("2.5.29.15"), tlv(0x01, [0xff]), tlv(0x04, tlv(0x03, [0x07, 0x80]))), // keyUsage: digitalSignature (critical)
    seq(oid("2.5.29.37"), tlv(0x04, seq(oid("1.3.6.1.5.5.7.3.1")))), // extKeyUsage: serverAuth
    seq(oid("2.5.29.19"), tlv(0x04, seq())), // basicConstraints: not a CA
  ));
  const subject = name("huizhen-media");
  const tbs = seq(
    tlv(0xa0, tlv(0x02, [2])),
    uint(serial),
    sigAlg,
    subject,
    seq(utcTime(notBefore), utcTime(notAfter)),
    subject,
    spki,
    extensions,
  );
  const raw = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.privateKey, tbs as BufferSource));
  const der = seq(tbs, sigAlg, tlv(0x03, cat(Uint8Array.of(0), derSignature(raw))));
  const hash = toBase64(new Uint8Array(await crypto.subtle.digest("SHA-256", der as BufferSource)));
  return { certPem: pem("CERTIFICATE", der), keyPem: pem("PRIVATE KEY", pkcs8), hash, notBefore, notAfter };
}

/** SHA-256 (base64) of the first certificate in a PEM chain. */
export async function pemHash(certPem: string): Promise<string> {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(certPem);
  if (!m) throw new Error("no certificate in PEM");
  const bin = atob(m[1]!.replace(/\s+/g, ""));
  const der = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return toBase64(new Uint8Array(await crypto.subtle.digest("SHA-256", der as BufferSource)));
}

export interface CertRotationOptions {
  hosts?: string[];
  /** Validity of each certificate, ms (≤ 14 days). */
  validityMs?: number;
  /** How often the node switches to the next certificate, ms; at most half the validity. */
  rotateEveryMs?: number;
}

/**
 * Holds the certificate in use and the one that follows it; both hashes are published. Every
 * `rotateEveryMs` the next one (made one period earlier, so it still has validity − period
 * left) takes over and a fresh next is made. A terminal that fetched the hashes up to one
 * period before a switch still connects after it; sessions already open keep going, as TLS
 * checks the certificate only at the handshake.
 */
export class CertRotation {
  current!: Certificate;
  next!: Certificate;
  readonly validityMs: number;
  readonly rotateEveryMs: number;

  constructor(private readonly opts: CertRotationOptions = {}) {
    this.validityMs = opts.validityMs ?? 12 * DAY_MS;
    this.rotateEveryMs = opts.rotateEveryMs ?? 4 * DAY_MS;
    if (this.validityMs > 14 * DAY_MS) throw new RangeError("hash-pinned certificates must be valid for at most 14 days");
    if (this.rotateEveryMs * 2 > this.validityMs) throw new RangeError("rotateEveryMs must be at most half the validity");
  }

  async init(): Promise<void> {
    this.current = await this.make();
    this.next = await this.make();
  }

  /** Hashes terminals may pin: the one in use, then the next. */
  get hashes(): string[] {
    return [this.current.hash, this.next.hash];
  }

  async rotate(): Promise<Certificate> {
    this.current = this.next;
    this.next = await this.make();
    return this.current;
  }

  private make(): Promise<Certificate> {
    return generateCertificate({ hosts: this.opts.hosts, validityMs: this.validityMs });
  }
}

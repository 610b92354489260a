// Patient fields at rest: AES-256-GCM through WebCrypto. The key set comes from a secret
// binding ({"keys":[{"kid","k": base64 32 bytes}, …]}; the first key encrypts, all decrypt),
// and each ciphertext names its key id so keys can rotate. The associated data binds a
// ciphertext to its clinic and record, so it cannot be moved to another tenant or row.
import { fromBase64, toBase64Url } from "./bytes.ts";

export class PhiCipherError extends Error {
  override name = "PhiCipherError";
}

const VERSION = "p1";

export class PhiCipher {
  private constructor(
    private readonly activeKid: string,
    private readonly keys: Map<string, CryptoKey>,
  ) {}

  static async fromSecret(secret: string | undefined): Promise<PhiCipher> {
    if (!secret) throw new PhiCipherError("PHI_KEYS is not set");
    let parsed: { keys?: { kid?: string; k?: string }[] };
    try {
      parsed = JSON.parse(secret);
    } catch {
      throw new PhiCipherError("PHI_KEYS is not valid JSON");
    }
    const list = parsed.keys;
    if (!Array.isArray(list) || list.length === 0) throw new PhiCipherError("PHI_KEYS has no keys");
    const keys = new Map<string, CryptoKey>();
    for (const { kid, k } of list) {
      if (!kid || !/^[A-Za-z0-9_-]{1,32}$/.test(kid) || !k) throw new PhiCipherError("every PHI key needs a kid and k");
      const raw = fromBase64(k);
      if (raw.length !== 32) throw new PhiCipherError(`PHI key ${kid} is not 32 bytes`);
      keys.set(kid, await crypto.subtle.importKey("raw", raw as BufferSource, "AES-GCM", false, ["encrypt", "decrypt"]));
    }
    return new PhiCipher(list[0]!.kid!, keys);
  }

  /** A fresh key-set secret with one key. */
  static generateSecret(kid = `phi${Date.now().toString(36)}`): string {
    const k = new Uint8Array(32);
    crypto.getRandomValues(k);
    return JSON.stringify({ keys: [{ kid, k: btoa(String.fromCharCode(...k)) }] });
  }

  /** `p1.<kid>.<iv>.<ciphertext+tag>`, base64url parts. */
  async encrypt(plaintext: string, context: string): Promise<string> {
    const iv = new Uint8Array(12);
    crypto.getRandomValues(iv);
    const ct = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: new TextEncoder().encode(context) },
      this.keys.get(this.activeKid)!,
      new TextEncoder().encode(plaintext),
    );
    return `${VERSION}.${this.activeKid}.${toBase64Url(iv)}.${toBase64Url(new Uint8Array(ct))}`;
  }

  async decrypt(blob: string, context: string): Promise<string> {
    const [version, kid, iv, ct] = blob.split(".");
    if (version !== VERSION || !kid || !iv || !ct) throw new PhiCipherError("not a PHI ciphertext");
    const key = this.keys.get(kid);
    if (!key) throw new PhiCipherError(`PHI key ${kid} is not available`);
    try {
      const pt = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: fromBase64(iv) as BufferSource, additionalData: new TextEncoder().encode(context) },
        key,
        fromBase64(ct) as BufferSource,
      );
      return new TextDecoder().decode(pt);
    } catch {
      throw new PhiCipherError("PHI ciphertext does not verify for this record");
    }
  }

  /** Key id a blob was written with, for re-encryption after rotation. */
  static keyIdOf(blob: string): string | undefined {
    return blob.split(".")[1];
  }

  get activeKeyId(): string {
    return this.activeKid;
  }
}

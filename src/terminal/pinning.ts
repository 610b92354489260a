// WebTransport options pinning a media node's self-made certificates by their SHA-256 hashes
// (base64, as the edge hands them out): `serverCertificateHashes`, or nothing without hashes.
import { fromBase64 } from "../bytes.ts";

export function pinnedCertificates(certHashes?: readonly string[]): WebTransportOptions {
  if (!certHashes?.length) return {};
  return { serverCertificateHashes: certHashes.map((h) => ({ algorithm: "sha-256", value: fromBase64(h) as BufferSource })) };
}

// WebTransport options pinning a media node's self-made certificates by their SHA-256 hashes
// (base64, as the edge hands them out): `serverCertificateHashes`, or nothing without hashes.
import { fromBase64 } from "../bytes.ts";

export function pinnedCertificates(certHashes?: readonly string[]): WebTransportOptions {
  if (!certHashes?.length) return {};
  return { serverCertificateHashes: certHashes.map((h) => ({ algorithm: "sha-256", value: fromBase64(h) as BufferSource })) };
}

/**
 * Options for a media session: pinned certificates and low-latency congestion control (BBR
 * where the runtime has it): a loss-based controller reads a lossy Wi-Fi's random loss as
 * congestion and holds media in its send buffer, where late media is worth nothing.
 */
export function mediaSessionOptions(certHashes?: readonly string[]): WebTransportOptions {
  return { ...pinnedCertificates(certHashes), congestionControl: "low-latency" };
}

// The token carries no PHI: at most a keyed hash of the clinic's patient id, scoped to the
// clinic so equal ids at two clinics do not link.
import { toBase64Url } from "./bytes.ts";

export async function patientRef(hashKey: string, clinicId: string, patientId: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(hashKey),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${clinicId}\u0000${patientId}`));
  return toBase64Url(new Uint8Array(mac).subarray(0, 16));
}

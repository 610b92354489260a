// Cross-clinic access on a running edge: clinic B tries every endpoint with clinic A's ids
// (and a few spellings of them). A read "leaks" when it answers 2xx or its body carries any of
// A's ids or its patient's values; a write "leaks" when A's record changed afterwards. Used by
// bench/trust.ts; test/edge/api.test.ts holds the per-endpoint BOLA assertions.
import { ClinicClient, testPatient } from "../support/clinic-client.ts";
import type { TrustStack } from "./stack.ts";

export interface TenancyResult {
  tried: number;
  leaked: number;
  leaks: string[];
}

export async function runCrossTenantReads(stack: TrustStack, consultations = 5): Promise<TenancyResult> {
  const res: TenancyResult = { tried: 0, leaked: 0, leaks: [] };
  const a = new ClinicClient(stack.edgeUrl, stack.clinicApiKey);
  const bClinic = await stack.clinic(`tenant-b-${Date.now()}`);
  const b = new ClinicClient(stack.edgeUrl, bClinic.apiKey);
  const a1 = await a.registerTerminal("A room 1", "doctor");
  const a2 = await a.registerTerminal("A room 2", "specialist");
  const b1 = await b.registerTerminal("B room 1", "doctor");
  const b2 = await b.registerTerminal("B room 2", "specialist");
  const aKeyId = (await a.call("GET", "/v1/api-keys")).body.apiKeys.find((k: { current: boolean }) => k.current).id as string;
  const asB1 = new ClinicClient(stack.edgeUrl, b1.secret);

  for (let i = 0; i < consultations; i++) {
    const patient = testPatient(`T${i}`);
    const x = (await a.createConsultation({ patient, requester: { terminalId: a1.id }, consultant: { terminalId: a2.id } })).body;
    const jti = x.tokens[0] ? JSON.parse(Buffer.from(x.tokens[0].token.split(".")[1]!, "base64url").toString()).jti as string : "";
    const secrets = [x.id, x.group.id, a1.id, a2.id, jti, aKeyId, patient.name, patient.id, ...x.tokens.map((t) => t.token)];
    const check = async (label: string, p: Promise<{ status: number; body: unknown }>, listing = false) => {
      res.tried++;
      const r = await p;
      const text = typeof r.body === "string" ? r.body : JSON.stringify(r.body ?? "");
      const carries = secrets.some((s) => s && text.includes(s));
      if (carries || (!listing && r.status < 300)) {
        res.leaked++;
        res.leaks.push(`${label}: ${r.status}`);
      }
    };
    for (const id of [x.id, x.id.toUpperCase(), `${x.id}/`, encodeURIComponent(x.id), `${x.id}%00`, `..%2F${x.id}`]) {
      await check(`GET consultation ${id}`, b.call("GET", `/v1/consultations/${id}`));
    }
    await check("GET audit", b.call("GET", `/v1/consultations/${x.id}/audit`));
    await check("POST end", b.call("POST", `/v1/consultations/${x.id}/end`));
    await check("POST tokens (A's terminal)", b.call("POST", `/v1/consultations/${x.id}/tokens`, { terminalId: a1.id }));
    await check("POST tokens (B's terminal)", b.call("POST", `/v1/consultations/${x.id}/tokens`, { terminalId: b1.id }));
    await check("DELETE token", b.call("DELETE", `/v1/consultations/${x.id}/tokens/${jti}`));
    await check("GET terminal", b.call("GET", `/v1/terminals/${a1.id}`));
    await check("DELETE terminal", b.call("DELETE", `/v1/terminals/${a2.id}`));
    await check("GET invitations with B's terminal secret", asB1.call("GET", `/v1/terminals/${a1.id}/invitations`));
    await check("POST measurements with B's terminal secret", asB1.call("POST", `/v1/terminals/${a1.id}/measurements`, { measurements: [{ nodeId: stack.credential.nodeId, rttMs: 1, jitterMs: 0, loss: 0 }] }));
    await check("DELETE A's API key", b.call("DELETE", `/v1/api-keys/${aKeyId}`));
    await check("POST consultation with A's terminals", b.createConsultation({ patient: testPatient("B"), requester: { terminalId: a1.id }, consultant: { terminalId: b2.id } }));
    await check("GET list before A's id", b.call("GET", `/v1/consultations?before=${x.id}`), true);
    await check("GET list", b.call("GET", "/v1/consultations?limit=200"), true);
    await check("GET terminals", b.call("GET", "/v1/terminals"), true);
    await check("GET api-keys", b.call("GET", "/v1/api-keys"), true);
    // A's side is untouched by any of it.
    res.tried++;
    const rec = (await a.getConsultation(x.id)).body;
    const terms = (await a.call("GET", "/v1/terminals")).body.terminals as { id: string; revokedAt: string | null }[];
    const keyLive = (await a.call("GET", "/v1/api-keys")).status === 200;
    if (rec.status === "ended" || rec.tokens.some((t: { revokedAt: string | null }) => t.revokedAt) || rec.tokens.length !== 2 || terms.some((t) => t.revokedAt) || !keyLive) {
      res.leaked++;
      res.leaks.push(`A's consultation ${i} changed by B`);
    }
  }
  return res;
}

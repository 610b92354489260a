// A demo consultation for the local demo clinic: two terminals, one consultation, and a page
// URL that shows both join links (tokens ride in the URL fragment, never sent to a server).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

async function call<T>(edgeUrl: string, apiKey: string, path: string, body: unknown): Promise<T> {
  const res = await fetch(`${edgeUrl}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

export async function createDemoConsultation(edgeUrl: string, apiKey: string) {
  const doctor = await call<{ id: string }>(edgeUrl, apiKey, "/v1/terminals", { label: "Demo clinic — referring doctor", kind: "doctor" });
  const specialist = await call<{ id: string }>(edgeUrl, apiKey, "/v1/terminals", { label: "Demo — remote dermatologist", kind: "specialist" });
  const consultation = await call<{ id: string; tokens: { role: string; token: string; joinUrl: string }[] }>(
    edgeUrl, apiKey, "/v1/consultations",
    {
      patient: { id: `demo-${Date.now()}` },
      requester: { terminalId: doctor.id },
      consultant: { terminalId: specialist.id },
      reason: "Demo: second opinion on a pigmented skin lesion",
    },
  );
  const byRole = Object.fromEntries(consultation.tokens.map((t) => [t.role, t.token]));
  const demoUrl = `${edgeUrl}/demo#requester=${byRole.requester}&consultant=${byRole.consultant}`;
  return { consultationId: consultation.id, demoUrl, tokens: consultation.tokens };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const stateFile = join(fileURLToPath(new URL("..", import.meta.url)), ".huizhen", "local.json");
  const state = existsSync(stateFile) ? JSON.parse(readFileSync(stateFile, "utf8")) : {};
  const key = process.env.CLINIC_API_KEY ?? state.clinicApiKey;
  const edgeUrl = process.env.EDGE_URL ?? `http://127.0.0.1:${process.env.EDGE_PORT ?? 8787}`;
  if (!key) {
    console.error("No demo clinic key: run `npm start` first, or set CLINIC_API_KEY.");
    process.exit(1);
  }
  createDemoConsultation(edgeUrl, key).then(
    (d) => console.log(d.demoUrl),
    (err) => { console.error(err.message); process.exit(1); },
  );
}

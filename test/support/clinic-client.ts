// A clinic's calls to the edge API, for tests and benches.

export interface ApiResult<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export interface CreatedConsultation {
  id: string;
  status: string;
  group: { id: string; node: { id: string; url: string; certHashes?: string[] } };
  tokens: { terminalId: string; role: "requester" | "consultant"; token: string; joinUrl: string; expiresAt: string | number }[];
}

export class ClinicClient {
  constructor(readonly edgeUrl: string, readonly apiKey: string) {}

  async call<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<ApiResult<T>> {
    const res = await fetch(`${this.edgeUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.apiKey}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try { parsed = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  async registerTerminal(label: string, kind: "doctor" | "patient" | "specialist" | "other") {
    const r = await this.call<{ id: string; secret: string }>("POST", "/v1/terminals", { label, kind });
    if (r.status !== 201) throw new Error(`register terminal: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  async createConsultation(body: unknown, idempotencyKey?: string): Promise<ApiResult<CreatedConsultation>> {
    return this.call("POST", "/v1/consultations", body, idempotencyKey ? { "idempotency-key": idempotencyKey } : {});
  }

  async getConsultation(id: string) {
    return this.call("GET", `/v1/consultations/${encodeURIComponent(id)}`);
  }

  async endConsultation(id: string) {
    return this.call("POST", `/v1/consultations/${encodeURIComponent(id)}/end`);
  }

  /** Two new terminals (a doctor and a specialist) and one consultation between them. */
  async newConsultation(tag: string, labels: [string, string] = [`Exam room ${tag}`, `Specialist ${tag}, remote`]): Promise<CreatedConsultation> {
    const rq = await this.registerTerminal(labels[0], "doctor");
    const cs = await this.registerTerminal(labels[1], "specialist");
    const r = await this.createConsultation({ patient: testPatient(tag), requester: { terminalId: rq.id }, consultant: { terminalId: cs.id } });
    if (r.status !== 201) throw new Error(`create consultation: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** Polls the record until `pred` holds (node events reach the edge asynchronously). */
  async waitForConsultation(id: string, pred: (c: any) => boolean, timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    let last: any;
    while (Date.now() < deadline) {
      last = (await this.getConsultation(id)).body;
      if (pred(last)) return last;
      await new Promise((r) => setTimeout(r, 150));
    }
    throw new Error(`consultation ${id} did not reach the expected state: ${JSON.stringify(last)}`);
  }
}

/** A patient record as a clinic would send it; the trust tests scan for these values. */
export function testPatient(tag = "") {
  return {
    id: `MRN-7731-${tag}QX`,
    name: `Marguerite Oyelaran-Fitzgibbon${tag}`,
    birthDate: "1961-04-17",
    sex: "female",
    summary: "Pigmented lesion, left shoulder, changed in 3 months",
  };
}

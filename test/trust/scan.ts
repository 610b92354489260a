// Scanning what a full run left behind (process output, captured HTTP traffic, token claims)
// for a patient's identifying values and for credentials. Used by the PHI test and the bench.
import { decodeJwt, decodeProtectedHeader } from "jose";
import type { CapturingProxy, HttpMessage } from "./capture.ts";

export type Needles = Record<string, string>;

/** Names of the needles found in `text`. */
export function found(text: string, needles: Needles): string[] {
  return Object.entries(needles).filter(([, v]) => v.length >= 6 && text.includes(v)).map(([k]) => k);
}

/** The values a trust scan looks for, named (never printed). */
export function patientNeedles(p: { id: string; name: string; birthDate?: string; summary?: string }): Needles {
  const n: Needles = { "patient.id": p.id, "patient.name": p.name };
  if (p.birthDate) n["patient.birthDate"] = p.birthDate;
  if (p.summary) n["patient.summary"] = p.summary;
  return n;
}

/** Each token whole and its signature alone (a token cut at a dot is still a leak). */
export function tokenNeedles(tokens: string[]): Needles {
  const n: Needles = {};
  tokens.forEach((t, i) => {
    n[`token[${i}]`] = t;
    n[`token[${i}].signature`] = t.split(".")[2] ?? t;
  });
  return n;
}

/** Claims and header of every token, as text, for a PHI scan of what a token carries. */
export function tokenContents(tokens: string[]): string {
  return tokens.map((t) => JSON.stringify(decodeProtectedHeader(t)) + JSON.stringify(decodeJwt(t))).join("\n");
}

export interface TrafficFinding {
  proxy: string;
  requestLine: string;
  direction: "request" | "response";
  part: "url" | "head" | "body";
  status?: number;
  needles: string[];
}

/** Where in the captured traffic any needle appears: URL, head or body of which message. */
export function scanTraffic(proxies: CapturingProxy[], needles: Needles): TrafficFinding[] {
  const out: TrafficFinding[] = [];
  for (const p of proxies) {
    for (const m of p.messages()) {
      const url = m.direction === "request" ? (m.requestLine.split(" ")[1] ?? "") : "";
      const parts: [TrafficFinding["part"], string][] = [["url", url], ["head", m.direction === "request" ? m.head.slice(m.requestLine.length) : m.head], ["body", m.body]];
      for (const [part, text] of parts) {
        let hit = found(text, needles);
        // URLs are also searched percent-decoded.
        if (part === "url") {
          try { hit = [...new Set([...hit, ...found(decodeURIComponent(text), needles)])]; } catch { /* malformed escape */ }
        }
        if (hit.length) out.push({ proxy: p.name, requestLine: routeOf(m), direction: m.direction, part, status: m.status, needles: hit });
      }
    }
  }
  return out;
}

/** "METHOD /path" with ids replaced by their kind, for readable findings and allow-lists. */
export function routeOf(m: HttpMessage): string {
  const [method, target] = m.requestLine.split(" ");
  const path = (target ?? "").split("?")[0]!.replace(/\/(cns|trm|jti|grp|key|cln)_[A-Za-z0-9_-]+/g, "/:$1");
  return `${method ?? "?"} ${path}`;
}

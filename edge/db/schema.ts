// The edge's store as one typed interface. Times are unix ms; JSON columns are text.
// Columns ending in `_enc` hold PhiCipher ciphertexts; `_hash` columns hold SHA-256 hex.
import type { Generated } from "kysely";

export interface Database {
  schema_migrations: SchemaMigrationTable;
  clinics: ClinicTable;
  api_keys: ApiKeyTable;
  terminals: TerminalTable;
  consultations: ConsultationTable;
  participants: ParticipantTable;
  tokens: TokenTable;
  audit_log: AuditTable;
  nodes: NodeTable;
  node_events: NodeEventTable;
  path_measurements: PathMeasurementTable;
  consultation_legs: ConsultationLegTable;
  rate_limits: RateLimitTable;
  node_report_jtis: NodeReportJtiTable;
}

export interface NodeReportJtiTable {
  jti: string;
  node_id: string;
  /** Unix ms after which the report's signature is refused anyway. */
  expires_at: number;
}

export interface SchemaMigrationTable {
  id: number;
  name: string;
  applied_at: number;
}

export interface ClinicTable {
  id: string;
  slug: string;
  name: string;
  /** Requests per rate-limit window; null = the edge default. */
  rate_limit: number | null;
  created_at: number;
  updated_at: number;
}

export interface ApiKeyTable {
  id: string;
  clinic_id: string;
  key_hash: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

export interface TerminalTable {
  id: string;
  clinic_id: string;
  label: string;
  kind: string;
  secret_hash: string;
  created_at: number;
  revoked_at: number | null;
}

export interface ConsultationTable {
  id: string;
  clinic_id: string;
  status: "pending" | "connected" | "ended";
  /** Keyed hash of the clinic's patient id (the same value the tokens carry). */
  patient_ref: string;
  patient_enc: string;
  /** Encrypted JSON {reason?, scheduledAt?}: free text and a date tied to the patient. */
  details_enc: string | null;
  region: string | null;
  node_id: string;
  node_url: string;
  node_api_url: string;
  cert_hashes: string;
  group_id: string;
  attributes: string;
  idempotency_key: string | null;
  request_hash: string | null;
  created_at: number;
  connected_at: number | null;
  ended_at: number | null;
  end_reason: string | null;
}

export interface ParticipantTable {
  consultation_id: string;
  clinic_id: string;
  terminal_id: string;
  role: "requester" | "consultant";
  joined_at: number | null;
  left_at: number | null;
}

export interface TokenTable {
  /** Delivery order; the invitations cursor. */
  seq: Generated<number>;
  jti: string;
  clinic_id: string;
  consultation_id: string;
  terminal_id: string;
  role: "requester" | "consultant";
  /** The JWT, encrypted: a bearer credential is kept only to deliver it to its terminal. */
  token_enc: string;
  issued_at: number;
  expires_at: number;
  first_used_at: number | null;
  delivered_at: number | null;
  revoked_at: number | null;
}

export interface AuditTable {
  id: Generated<number>;
  clinic_id: string;
  consultation_id: string;
  at: number;
  actor_type: "clinic" | "terminal" | "node" | "admin" | "edge";
  actor_id: string;
  action: string;
  terminal_id: string | null;
  /** JSON without PHI (ids, reasons, counts). */
  detail: string | null;
}

export interface NodeTable {
  id: string;
  region: string;
  url: string;
  api_url: string;
  cert_hashes: string;
  /** URL of the node's TCP fallback (WebTransport over WebSocket); null when it serves none. */
  fallback_url: string | null;
  capacity: string;
  load: string;
  draining: number;
  last_seen_at: number;
  registered_at: number;
}

export interface NodeEventTable {
  node_id: string;
  id: string;
  type: string;
  consultation_id: string;
  received_at: number;
}

export interface PathMeasurementTable {
  clinic_id: string;
  terminal_id: string;
  node_id: string;
  rtt_ms: number;
  jitter_ms: number;
  loss: number;
  measured_at: number;
}

export interface RateLimitTable {
  bucket: string;
  window: number;
  count: number;
}

/** A terminal of a cascaded consultation placed on another node than the consultation's. */
export interface ConsultationLegTable {
  consultation_id: string;
  clinic_id: string;
  terminal_id: string;
  node_id: string;
  node_url: string;
  node_api_url: string;
  cert_hashes: string;
}

// Domain types shared by the edge, the media node and the browser SDK.

export type TerminalKind = "doctor" | "patient" | "specialist" | "other";
export const TERMINAL_KINDS: readonly TerminalKind[] = ["doctor", "patient", "specialist", "other"];

/** A terminal's part in one consultation: the clinic side that asked, or the remote consultant. */
export type Role = "requester" | "consultant";
export const ROLES: readonly Role[] = ["requester", "consultant"];

export type ConsultationStatus = "pending" | "connected" | "ended";

/** What the node must enforce for a group; carried in every token of the group. */
export interface GroupAttributes {
  /** Members allowed at once. */
  maxParticipants: number;
  /** Upper bound of video a member may publish, kbit/s. */
  maxVideoKbps: number;
  /** Upper bound of audio a member may publish, kbit/s. */
  maxAudioKbps: number;
  /** Tallest video a member may publish (lines). */
  maxHeight: number;
}

export const DEFAULT_GROUP_ATTRIBUTES: GroupAttributes = {
  maxParticipants: 2,
  maxVideoKbps: 6000,
  maxAudioKbps: 128,
  maxHeight: 1080,
};

/** A consultation's group as the edge reserves it on a media node (POST /v1/groups). */
export interface GroupSpec {
  groupId: string;
  consultationId: string;
  clinicId: string;
  attributes: GroupAttributes;
  members: { terminalId: string; role: Role }[];
  /** Unix ms after which the group is closed. */
  expiresAt: number;
}

/** A media node as the edge's registry knows it. */
export interface MediaNodeInfo {
  id: string;
  region: string;
  /** WebTransport URL terminals connect to, e.g. https://node-1.example:4433/v1/session */
  url: string;
  /** Base URL of the node's control API (edge → node). */
  apiUrl: string;
  /** SHA-256 hashes (base64) of the node's self-signed certificates, for serverCertificateHashes. */
  certHashes: string[];
  /** WebTransport-over-WebSocket URL on TCP for networks that block UDP (CA-signed certificate). */
  fallbackUrl?: string;
  capacity: NodeCapacity;
  load: NodeLoad;
  /** Unix ms of the last heartbeat. */
  lastSeenAt: number;
  draining: boolean;
}

export interface NodeCapacity {
  maxSessions: number;
  maxGroups: number;
  /** Forwarding budget, kbit/s out. */
  maxKbpsOut: number;
}

export interface NodeLoad {
  sessions: number;
  groups: number;
  kbpsIn: number;
  kbpsOut: number;
  /** 0..1 share of one core used by the node process, when known. */
  cpu: number;
  /** Event-loop lag p99 over the last interval, ms. */
  loopLagMs: number;
  /** Datagram loss the node observed from its terminals, 0..1. */
  lossRate: number;
}

/** Where a terminal joins: the node, its URLs and certificate hashes (GET /v1/join `node`, a move's answer). */
export interface NodePlacement {
  id: string;
  url: string;
  certHashes: string[];
  /** The node's TCP fallback, when it serves one (the SDK's connectivity ladder). */
  fallbackUrl?: string;
}

/** What a terminal measured towards a node before joining. */
export interface PathMeasurement {
  nodeId: string;
  rttMs: number;
  jitterMs: number;
  /** 0..1 */
  loss: number;
  /** Unix ms. */
  measuredAt: number;
}

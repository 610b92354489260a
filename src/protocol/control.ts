// Control messages: msgpack maps on the session's first bidirectional stream, each framed
// with its length (see framing.ts). Every decoded message is checked before use.
import { Packr } from "msgpackr";
import type { Role } from "../types.ts";
import type { CloseReason } from "./codes.ts";
import { CloseCode } from "./codes.ts";

export const PROTOCOL_VERSION = 1;
/** Largest control message accepted, bytes. */
export const MAX_CONTROL_BYTES = 64 * 1024;

export interface Member {
  terminalId: string;
  role: Role;
  /** Small number the node assigns per group; stamped into forwarded media headers. */
  slot: number;
}

// Terminal → node
export interface JoinMessage {
  t: "join";
  v: number;
  token: string;
  sdk?: string;
  /** The `resume` secret of an earlier welcome for this token: rejoin after a lost connection. */
  resume?: string;
  /** Largest datagram this terminal can send (its WebTransport `maxDatagramSize`). */
  maxDatagramSize?: number;
  /**
   * false: datagrams do not get through this terminal's network (a middlebox passes QUIC
   * streams only). Media then goes both ways as objects on the session's streams: what would
   * have been a datagram is sent, unchanged, as one object without the `reliable` flag.
   */
  datagrams?: boolean;
}
export interface PingMessage { t: "ping"; n: number; ts?: number }
/**
 * A keyframe wanted on `track`. `layer` names one simulcast layer (its own sequence space and
 * keyframes); without it every layer the publisher sends is meant.
 */
export interface KeyframeRequestMessage { t: "keyframe-request"; track: number; slot?: number; layer?: number }
export interface SignalMessage { t: "signal"; kind: string; body?: unknown; to?: number; from?: number }
export interface StatsMessage { t: "stats"; report: Record<string, number | string> }
export interface ByeMessage { t: "bye"; reason?: string }
/**
 * Frames a receiver misses (by sequence). Terminal → node: `slot` is the publisher asked;
 * node → terminal: `slot` is the member asking. The publisher re-sends them on its reliable stream.
 */
export interface NackMessage {
  t: "nack"; track: number; sequences: number[]; slot: number;
  /** Simulcast layer of the sequences (default 0). */
  layer?: number;
  /**
   * Per sequence (same order), the fragment indices still missing of a frame partly received;
   * an empty list (or no `parts`) asks for the whole frame. A big keyframe that lost one
   * datagram of twelve then costs one datagram again, not twelve.
   */
  parts?: number[][];
}
/**
 * Receiver feedback about one publisher's media over the last interval (docs/protocol.md §10):
 * the node's per-subscriber bandwidth estimate and the publisher's target come from it.
 */
export interface ReceiveReportMessage {
  t: "receive-report";
  /** The publisher reported on. */
  slot: number;
  intervalMs: number;
  /** Media bytes received from it over datagrams. */
  bytes: number;
  /** Datagrams lost on the path, 0..1. */
  loss: number;
  /** Queueing delay (one-way delay above its recent minimum), ms. */
  delayMs: number;
  jitterMs?: number;
  /** The reporter's round trip to the node, ms. */
  rttMs?: number;
}

// Node → terminal
export interface WelcomeMessage {
  t: "welcome";
  v: number;
  sessionId: string;
  consultationId: string;
  groupId: string;
  self: Member;
  members: Member[];
  maxDatagramSize: number;
  /** The terminal pings at least this often; the node drops it after 5 missed intervals. */
  pingIntervalMs: number;
  /** Secret that lets this token rejoin (join.resume) until it expires, replacing this session. */
  resume?: string;
  /** Token expiry, unix s: the resume path closes then. */
  expiresAt?: number;
}
/** The group's datagram size changed (a member with a smaller one joined or one left). */
export interface DatagramSizeMessage { t: "datagram-size"; maxDatagramSize: number }
export interface ConnectedMessage { t: "connected"; members: Member[] }
export interface PeerJoinedMessage { t: "peer-joined"; member: Member }
export interface PeerLeftMessage { t: "peer-left"; member: Member; reason: string }
export interface PongMessage { t: "pong"; n: number; ts?: number }
export interface PeerStatsMessage { t: "peer-stats"; from: number; report: Record<string, number | string> }
/** Frames the node chose not to forward to this terminal: skip them, do not wait or nack. */
export interface SkipMessage { t: "skip"; slot: number; track: number; sequences: number[]; discardable: boolean; /** Simulcast layer of the sequences (default 0). */ layer?: number }
/**
 * Quality of one direction between this terminal and another member. `send`: how `slot`
 * receives this terminal's media, with `targetKbps` (what this terminal's encoders should aim
 * at); `receive`: how this terminal receives `slot`'s media.
 */
export interface QualityMessage {
  t: "quality";
  slot: number;
  direction: "send" | "receive";
  estimateKbps: number;
  kbps: number;
  loss: number;
  delayMs: number;
  targetKbps?: number;
  rttMs?: number;
  /** Video frames the node dropped on this path since the last report. */
  dropped?: number;
  /**
   * `send` only: the node's estimate of this terminal's uplink (what reaches the node from it,
   * before any subscriber's path), kbit/s: what decides how many simulcast layers to send.
   */
  uplinkKbps?: number;
  /** Simulcast layer of `slot`'s video the node forwards on this path (`receive`; `send`: to that member). */
  layer?: number;
}
export interface EndedMessage { t: "ended"; reason: CloseReason }
export interface ErrorMessage { t: "error"; code: CloseReason; message: string }

export type TerminalMessage =
  | JoinMessage | PingMessage | KeyframeRequestMessage | SignalMessage | StatsMessage | ByeMessage | NackMessage
  | ReceiveReportMessage;
export type NodeMessage =
  | WelcomeMessage | ConnectedMessage | PeerJoinedMessage | PeerLeftMessage | PongMessage
  | KeyframeRequestMessage | SignalMessage | PeerStatsMessage | EndedMessage | ErrorMessage
  | DatagramSizeMessage | NackMessage | SkipMessage | QualityMessage;
export type ControlMessage = TerminalMessage | NodeMessage;

export class ProtocolError extends Error {
  override name = "ProtocolError";
}

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

export function encodeControl(msg: ControlMessage): Uint8Array {
  return packr.pack(msg);
}

type Check = (m: Record<string, unknown>) => boolean;
const str = (v: unknown, max = 8192) => typeof v === "string" && v.length > 0 && v.length <= max;
const uint = (v: unknown, max = 0xffffffff) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= max;
const opt = (v: unknown, f: (v: unknown) => boolean) => v === undefined || f(v);
const num = (v: unknown) => typeof v === "number" && Number.isFinite(v);
const isMember = (v: unknown) => {
  if (!v || typeof v !== "object") return false;
  const m = v as Record<string, unknown>;
  return str(m.terminalId, 128) && (m.role === "requester" || m.role === "consultant") && uint(m.slot, 255);
};
const isReport = (v: unknown) =>
  !!v && typeof v === "object" && !Array.isArray(v) &&
  Object.entries(v as object).length <= 64 &&
  Object.values(v as object).every((x) => num(x) || (typeof x === "string" && x.length <= 256));
const isReason = (v: unknown) => typeof v === "string" && v in CloseCode;
const isLayer = (v: unknown) => uint(v, 3);
/** `parts` of a nack (or a node link's ask): one list of fragment indices per sequence. */
export const isNackParts = (parts: unknown, sequences: number): boolean =>
  Array.isArray(parts) && parts.length === sequences &&
  parts.every((p) => Array.isArray(p) && p.length <= 1024 && p.every((i) => uint(i, 0xffff)));

const isNack = (m: Record<string, unknown>) =>
  uint(m.track, 255) && uint(m.slot, 255) && Array.isArray(m.sequences) &&
  m.sequences.length > 0 && m.sequences.length <= 64 && m.sequences.every((x) => uint(x)) && opt(m.layer, isLayer) &&
  opt(m.parts, (p) => isNackParts(p, (m.sequences as unknown[]).length));

const nonneg = (v: unknown) => num(v) && (v as number) >= 0;
const share = (v: unknown) => nonneg(v) && (v as number) <= 1;
const isSequences = (v: unknown) => Array.isArray(v) && v.length > 0 && v.length <= 64 && v.every((x) => uint(x));

const TERMINAL_CHECKS: Record<TerminalMessage["t"], Check> = {
  join: (m) =>
    uint(m.v, 255) && str(m.token, 8192) && opt(m.sdk, (s) => str(s, 128)) && opt(m.resume, (s) => str(s, 128)) &&
    opt(m.maxDatagramSize, (s) => uint(s, 65535)) && opt(m.datagrams, (d) => typeof d === "boolean"),
  ping: (m) => uint(m.n) && opt(m.ts, num),
  "keyframe-request": (m) => uint(m.track, 255) && opt(m.slot, (s) => uint(s, 255)) && opt(m.layer, isLayer),
  signal: (m) => str(m.kind, 64) && opt(m.to, (s) => uint(s, 255)),
  stats: (m) => isReport(m.report),
  bye: (m) => opt(m.reason, (s) => str(s, 64)),
  nack: isNack,
  "receive-report": (m) =>
    uint(m.slot, 255) && uint(m.intervalMs, 60_000) && uint(m.bytes) && share(m.loss) && nonneg(m.delayMs) &&
    opt(m.jitterMs, nonneg) && opt(m.rttMs, nonneg),
};

const NODE_CHECKS: Record<NodeMessage["t"], Check> = {
  welcome: (m) =>
    uint(m.v, 255) && str(m.sessionId, 128) && str(m.consultationId, 128) && str(m.groupId, 128) &&
    isMember(m.self) && Array.isArray(m.members) && m.members.every(isMember) &&
    uint(m.maxDatagramSize, 65535) && uint(m.pingIntervalMs) && opt(m.resume, (s) => str(s, 128)) &&
    opt(m.expiresAt, uint),
  connected: (m) => Array.isArray(m.members) && m.members.every(isMember),
  "peer-joined": (m) => isMember(m.member),
  "peer-left": (m) => isMember(m.member) && typeof m.reason === "string",
  pong: (m) => uint(m.n) && opt(m.ts, num),
  "keyframe-request": (m) => uint(m.track, 255) && opt(m.slot, (s) => uint(s, 255)) && opt(m.layer, isLayer),
  signal: (m) => str(m.kind, 64) && opt(m.from, (s) => uint(s, 255)),
  "peer-stats": (m) => uint(m.from, 255) && isReport(m.report),
  ended: (m) => isReason(m.reason),
  error: (m) => isReason(m.code) && typeof m.message === "string",
  "datagram-size": (m) => uint(m.maxDatagramSize, 65535),
  nack: isNack,
  skip: (m) => uint(m.slot, 255) && uint(m.track, 255) && isSequences(m.sequences) && typeof m.discardable === "boolean" &&
    opt(m.layer, isLayer),
  quality: (m) =>
    uint(m.slot, 255) && (m.direction === "send" || m.direction === "receive") && nonneg(m.estimateKbps) &&
    nonneg(m.kbps) && share(m.loss) && nonneg(m.delayMs) && opt(m.targetKbps, nonneg) && opt(m.rttMs, nonneg) &&
    opt(m.dropped, uint) && opt(m.uplinkKbps, nonneg) && opt(m.layer, isLayer),
};

function decodeWith<T>(bytes: Uint8Array, checks: Record<string, Check>): T {
  if (bytes.length > MAX_CONTROL_BYTES) throw new ProtocolError(`control message of ${bytes.length} bytes is too large`);
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch {
    throw new ProtocolError("control message is not valid msgpack");
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new ProtocolError("control message is not a map");
  const m = value as Record<string, unknown>;
  const check = typeof m.t === "string" && Object.hasOwn(checks, m.t) ? checks[m.t] : undefined;
  if (!check) throw new ProtocolError(`unknown control message type ${JSON.stringify(String(m.t)).slice(0, 40)}`);
  if (!check(m)) throw new ProtocolError(`malformed ${m.t} message`);
  return m as T;
}

/** Decodes what a terminal sent; throws ProtocolError on anything malformed. */
export function decodeTerminalMessage(bytes: Uint8Array): TerminalMessage {
  return decodeWith<TerminalMessage>(bytes, TERMINAL_CHECKS);
}

/** Decodes what a node sent; throws ProtocolError on anything malformed. */
export function decodeNodeMessage(bytes: Uint8Array): NodeMessage {
  return decodeWith<NodeMessage>(bytes, NODE_CHECKS);
}

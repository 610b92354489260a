// Why a join or a call failed, as a stable `reason` the page maps to a message a person can act on.
import { CLOSE_MESSAGES, type CloseReason } from "../../src/protocol/codes.ts";

export type ClientReason =
  | CloseReason
  | "unsupportedBrowser"
  | "cameraDenied"
  | "cameraMissing"
  | "cameraBusy"
  | "nodeUnreachable"
  | "edgeUnreachable"
  | "cpuLimited";

const CLIENT_MESSAGES: Record<string, string> = {
  unsupportedBrowser: "This browser cannot run the consultation (it needs WebTransport and WebCodecs). Use a current Chrome or Edge.",
  cameraDenied: "Camera or microphone access was refused. Allow it in the browser's site settings, then reload the page.",
  cameraMissing: "No camera or microphone was found on this device.",
  cameraBusy: "The camera is in use by another application. Close it and try again.",
  nodeUnreachable: "The media server cannot be reached from this network. Check the connection or firewall (UDP must be allowed), then try again.",
  edgeUnreachable: "The consultation service cannot be reached. Check the network connection, then try again.",
};

export class HuizhenError extends Error {
  override name = "HuizhenError";
  constructor(readonly reason: ClientReason | string, message?: string) {
    super(message ?? messageFor(reason));
  }
}

export function messageFor(reason: string): string {
  return CLIENT_MESSAGES[reason] ?? CLOSE_MESSAGES[reason as CloseReason] ?? "Something went wrong.";
}

/** Edge error codes (snake_case JSON) → reasons. */
export function reasonOfEdgeCode(code: string | undefined, status: number): string {
  switch (code) {
    case "token_expired": return "tokenExpired";
    case "token_invalid": return "tokenInvalid";
    case "consultation_ended": return "consultationEnded";
    case "revoked": return "revoked";
    case "token_in_use": return "tokenInUse";
  }
  if (status === 401) return "tokenInvalid";
  if (status === 410) return "consultationEnded";
  if (status === 403) return "revoked";
  return "internal";
}

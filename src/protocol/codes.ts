// Why a session was refused or ended. Sent both as a control `error` message (code string)
// and as the WebTransport closeCode (number), so a client learns it either way.

export const CloseCode = {
  normal: 0,
  tokenMissing: 4001,
  tokenInvalid: 4002,
  tokenExpired: 4003,
  wrongNode: 4004,
  groupUnknown: 4005,
  tokenInUse: 4006,
  groupFull: 4007,
  consultationEnded: 4008,
  protocolError: 4009,
  timeout: 4010,
  replaced: 4011,
  nodeDraining: 4012,
  limitExceeded: 4013,
  revoked: 4014,
  internal: 4500,
} as const;

export type CloseReason = keyof typeof CloseCode;

const REASONS = new Map<number, CloseReason>(
  (Object.entries(CloseCode) as [CloseReason, number][]).map(([k, v]) => [v, k]),
);

export function closeReasonOf(code: number): CloseReason | undefined {
  return REASONS.get(code);
}

/** Human text for each reason, shown by clients; never contains PHI or token material. */
export const CLOSE_MESSAGES: Record<CloseReason, string> = {
  normal: "The session ended.",
  tokenMissing: "No consultation token was presented.",
  tokenInvalid: "The consultation token is not valid.",
  tokenExpired: "The consultation token has expired; ask for a new invitation.",
  wrongNode: "The token is for another media node.",
  groupUnknown: "This consultation is not hosted on this media node.",
  tokenInUse: "This token is already in use by another live session.",
  groupFull: "The consultation already has all its participants.",
  consultationEnded: "The consultation has ended.",
  protocolError: "The terminal broke the wire protocol.",
  timeout: "The terminal stopped answering.",
  replaced: "The same terminal joined again from another session.",
  nodeDraining: "The media node is shutting down; reconnect to get another node.",
  limitExceeded: "The session exceeded a limit of the media node.",
  revoked: "Access to this consultation was revoked.",
  internal: "The media node failed; reconnect.",
};

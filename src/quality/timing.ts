// Receiver timing that follows the measured round trip instead of loopback constants: how long
// a gap may stand before it is asked for (nack) and how long it is waited for at most (reorder
// window). A retransmission crosses both members' paths to the node: nack up to the node and on
// to the publisher, the frame back the same way, so it costs about two round trips to the node.

export interface ReceiverTiming {
  nackDelayMs: number;
  reorderMs: number;
  /** A frame asked for and still missing this long after is asked for again, ms. */
  nackRetryMs: number;
}

export interface TimingInput {
  /** This terminal's round trip to the node, ms (0 when not measured yet). */
  rttMs: number;
  /** The publisher's round trip to the node when known, ms. */
  peerRttMs?: number;
  /** Inter-arrival jitter, ms. */
  jitterMs?: number;
  /** Most a frame may be held for a retransmission, ms (the latency budget). */
  budgetMs?: number;
}

export function receiverTiming(i: TimingInput): ReceiverTiming {
  const rtt = Math.max(0, i.rttMs || 0);
  const peer = i.peerRttMs && i.peerRttMs > 0 ? i.peerRttMs : rtt;
  const jitter = Math.max(0, i.jitterMs ?? 0);
  // Wait out ordinary jitter before calling a gap a loss.
  const nackDelayMs = Math.round(Math.min(80, Math.max(15, 2 * jitter + 5)));
  // nack + one retransmission across both paths, plus slack for pacing and scheduling.
  const wanted = nackDelayMs + 2 * (rtt + peer) + 3 * jitter + 60;
  const budget = i.budgetMs ?? 400;
  const reorderMs = Math.round(Math.min(budget, Math.max(80, wanted)));
  // One retransmission round: both paths' round trips, plus jitter.
  const nackRetryMs = Math.round(Math.max(20, 1.2 * (rtt + peer) + 2 * jitter + 10));
  return { nackDelayMs, reorderMs, nackRetryMs };
}

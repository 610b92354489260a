// The connectivity ladder: how a terminal gets a WebTransport session to its media node from
// whatever network it is on. Rungs, best first:
//   1. "quic"      — native WebTransport over QUIC/UDP (datagrams for media, streams for control);
//   2. "websocket" — WebTransport over a WebSocket on TCP (the node's fallback,
//                    media/transport/fallback.ts), when UDP is blocked. Its "datagrams" ride TCP:
//                    reliable and in order, so loss turns into delay instead of gaps.
// QUIC goes first; the fallback starts after a short head start (or at once when QUIC fails
// fast), and whichever is ready first wins; the other is closed. A network that blocked QUIC on
// the last try starts both at once.
//   Between the two, "quic-streams": QUIC whose datagrams do not get through (the readiness
// check's "QUIC streams only"). The session joins with `datagrams: false` and media rides its
// streams both ways; the WebSocket rung still races it after the head start.
//
// No network code of its own beyond the constructors it is given: the decision logic runs with
// fake constructors in the unit tests (test/unit/connect-ladder.test.ts).
import { mediaSessionOptions } from "../../src/terminal/pinning.ts";
import { closeReasonOf } from "../../src/protocol/codes.ts";

export type Rung = "quic" | "quic-streams" | "websocket";

export interface LadderTarget {
  /** The node's QUIC WebTransport URL. */
  url: string;
  certHashes?: string[];
  /** The node's TCP fallback URL (no fallback when absent). */
  fallbackUrl?: string;
}

export interface LadderOptions {
  /** Time QUIC has on its own before the fallback starts too, ms (default 1200). */
  headStartMs?: number;
  /** Time allowed until some rung is ready, ms (default 10 s). */
  timeoutMs?: number;
  /** Do not try QUIC at all. */
  skipQuic?: boolean;
  /** QUIC's datagrams do not come back on this network (readiness check): a QUIC session is the "quic-streams" rung. */
  datagramsBlocked?: boolean;
  /** Native WebTransport (default `globalThis.WebTransport`). */
  native?: typeof WebTransport;
  /** WebTransport over WebSocket (the SDK passes the package's `WebTransportPonyfill`). */
  fallback?: typeof WebTransport;
}

export interface OpenedTransport {
  wt: WebTransport;
  rung: Rung;
  /** The URL the winning session went to. */
  url: string;
  /** From the start to the winner's `ready`, ms. */
  ms: number;
  /** Why QUIC lost, when it did ("timed out", "skipped", or the browser's message). */
  quicError?: string;
}

/** No rung came up; `attempts` says what each one did. */
export class LadderError extends Error {
  override name = "LadderError";
  constructor(readonly attempts: { rung: Rung; error: string }[]) {
    super(`no way to the media node: ${attempts.map((a) => `${a.rung}: ${a.error}`).join("; ") || "nothing to try"}`);
  }
}

function closeQuietly(wt: WebTransport | undefined): void {
  if (!wt) return;
  wt.closed.catch(() => {});
  // A session still connecting cannot be closed everywhere: close it once it is ready.
  wt.ready.then(() => { try { wt.close({ closeCode: 0, reason: "lost the race" }); } catch { /* gone */ } }, () => {});
  try { wt.close({ closeCode: 0, reason: "lost the race" }); } catch { /* not open yet */ }
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err)) || "failed";

/** Opens the best session the network allows (see the top of this file). */
export function openLadder(target: LadderTarget, opts: LadderOptions = {}): Promise<OpenedTransport> {
  const native = opts.native ?? (globalThis as { WebTransport?: typeof WebTransport }).WebTransport;
  const fallback = target.fallbackUrl ? opts.fallback : undefined;
  const headStartMs = opts.headStartMs ?? 1200;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const t0 = performance.now();
  const quicRung: Rung = opts.datagramsBlocked ? "quic-streams" : "quic";
  return new Promise<OpenedTransport>((resolve, reject) => {
    const attempts: { rung: Rung; error: string }[] = [];
    let quic: WebTransport | undefined;
    let ws: WebTransport | undefined;
    let done = false;
    let fallbackStarted = false;
    let pending = 0;
    const timers: ReturnType<typeof setTimeout>[] = [];
    const finish = (r: OpenedTransport | Error) => {
      if (done) return;
      done = true;
      for (const t of timers) clearTimeout(t);
      if (r instanceof Error) {
        closeQuietly(quic);
        closeQuietly(ws);
        return reject(r);
      }
      closeQuietly(r.rung === "websocket" ? quic : ws);
      resolve(r);
    };
    const failed = (rung: Rung, err: unknown) => {
      attempts.push({ rung, error: message(err) });
      pending--;
      if (rung === quicRung) startFallback();
      if (pending === 0 && !done && (fallbackStarted || !fallback)) finish(new LadderError(attempts));
    };
    const quicError = () => attempts.find((a) => a.rung === quicRung)?.error ?? (quic ? "not ready in time" : "skipped");
    const startFallback = () => {
      if (fallbackStarted || done || !fallback) return;
      fallbackStarted = true;
      pending++;
      try {
        ws = new fallback(target.fallbackUrl!, {});
      } catch (err) {
        return failed("websocket", err);
      }
      const mine = ws;
      mine.closed.catch(() => {});
      mine.ready.then(
        () => finish({ wt: droppedIsAnError(mine), rung: "websocket", url: target.fallbackUrl!, ms: performance.now() - t0, quicError: quicError() }),
        (err) => failed("websocket", err),
      );
    };

    timers.push(setTimeout(() => {
      const all = [...attempts];
      const late = `not ready within ${timeoutMs} ms`;
      if (quic && !all.some((x) => x.rung === quicRung)) all.push({ rung: quicRung, error: late });
      if (ws && !all.some((x) => x.rung === "websocket")) all.push({ rung: "websocket", error: late });
      finish(new LadderError(all));
    }, timeoutMs));
    if (!opts.skipQuic && native) {
      pending++;
      try {
        quic = new native(target.url, mediaSessionOptions(target.certHashes));
      } catch (err) {
        quic = undefined;
        failed(quicRung, err);
      }
      const mine = quic;
      if (mine) {
        mine.closed.catch(() => {});
        mine.ready.then(
          () => finish({ wt: mine, rung: quicRung, url: target.url, ms: performance.now() - t0 }),
          (err) => failed(quicRung, err),
        );
        if (fallback) timers.push(setTimeout(startFallback, Math.max(0, headStartMs)));
      }
    } else {
      attempts.push({ rung: "quic", error: native ? "skipped" : "this browser has no native WebTransport" });
      if (!fallback) return finish(new LadderError(attempts));
      startFallback();
    }
  });
}

/**
 * The ladder across a call's sessions (the first join and every move to another node): it
 * remembers what this network allowed last time, so a move off a node does not wait out QUIC's
 * head start again on a network that blocks UDP.
 */
export class Connector {
  /** The rung of the last session opened (undefined before the first). */
  rung?: Rung;
  /** Why QUIC was not used for the last session. */
  quicError?: string;
  private quicBlocked = false;

  constructor(private readonly opts: LadderOptions & { onOpened?: (o: OpenedTransport) => void } = {}) {}

  /** The options the next attempt uses (exported for the unit tests). */
  nextOptions(): LadderOptions {
    return { ...this.opts, ...(this.quicBlocked ? { headStartMs: 0 } : {}) };
  }

  async open(target: LadderTarget): Promise<OpenedTransport> {
    const o = await openLadder(target, this.nextOptions());
    this.rung = o.rung;
    this.quicError = o.quicError;
    // QUIC lost on its own merits (not merely skipped): race both from the start next time.
    this.quicBlocked = o.rung === "websocket" && o.quicError !== "skipped";
    this.opts.onOpened?.(o);
    return o;
  }
}

/**
 * The fallback's sessions end a lost TCP connection (the node died, a proxy cut it) with a
 * transport code that is no Huizhen close code (e.g. 8, HTTP/2 CANCEL) — where a lost QUIC
 * session rejects `closed`. Read as a close code it would pass for a normal end, and the
 * terminal would not move to another node. This view of the session rejects `closed` instead,
 * unless this side closed it; the node's own close codes (0 and 4xxx) pass unchanged.
 */
export function droppedIsAnError(wt: WebTransport): WebTransport {
  let closedHere = false;
  const closed = wt.closed.then((info) => {
    const code = info?.closeCode ?? 0;
    if (closedHere || closeReasonOf(code)) return info;
    throw Object.assign(new Error(`the connection to the media node was lost (transport code ${code})`), { name: "WebTransportError" });
  });
  closed.catch(() => {});
  return new Proxy(wt, {
    get(target, prop) {
      if (prop === "closed") return closed;
      if (prop === "close") {
        return (info?: WebTransportCloseInfo) => {
          closedHere = true;
          return target.close(info);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/**
 * A constructor handing out an already opened session, for `TerminalSession.connect`'s
 * `WebTransport` option: the ladder has opened it, the protocol above runs on it unchanged.
 */
export function openedAs(wt: WebTransport): typeof WebTransport {
  return function OpenedWebTransport() { return wt; } as unknown as typeof WebTransport;
}

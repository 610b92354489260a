// A scripted stand-in for a media node's side of one WebTransport session (a mock: Node 20 has
// no WebTransport), for TerminalSession tests without a network. It answers `join` with a
// welcome and lets the test push control messages, datagrams and reliable objects.
import { decodeTerminalMessage, encodeControl, type NodeMessage, type TerminalMessage } from "../../src/protocol/control.ts";
import { frame, FrameDecoder } from "../../src/protocol/framing.ts";

export function pipe<T>() {
  let ctl!: ReadableStreamDefaultController<T>;
  const readable = new ReadableStream<T>({ start: (c) => { ctl = c; } });
  return { readable, push: (v: T) => ctl.enqueue(v) };
}

/** The node's side of one session, driven by the test. */
export class ScriptedNode {
  readonly fromTerminal: TerminalMessage[] = [];
  readonly sentDatagrams: Uint8Array[] = [];
  control = pipe<Uint8Array>();
  datagrams = pipe<Uint8Array>();
  incomingUni = pipe<ReadableStream<Uint8Array>>();
  objects?: ReturnType<typeof pipe<Uint8Array>>;
  closed = false;
  private closeResolve!: (v: WebTransportCloseInfo) => void;
  readonly WebTransport: typeof WebTransport;

  constructor(welcome: Partial<Extract<NodeMessage, { t: "welcome" }>> = {}) {
    const node = this;
    const dec = new FrameDecoder();
    const closedP = new Promise<WebTransportCloseInfo>((r) => { this.closeResolve = r; });
    class FakeWT {
      ready = Promise.resolve();
      closed = closedP;
      datagrams = {
        maxDatagramSize: 1200,
        readable: node.datagrams.readable,
        writable: new WritableStream<Uint8Array>({ write: (d) => { node.sentDatagrams.push(d); } }),
      };
      incomingUnidirectionalStreams = node.incomingUni.readable;
      incomingBidirectionalStreams = new ReadableStream();
      constructor(readonly url: string) {}
      async createBidirectionalStream() {
        return {
          readable: node.control.readable,
          writable: new WritableStream<Uint8Array>({
            write: (chunk) => {
              for (const f of dec.push(chunk)) {
                const m = decodeTerminalMessage(f);
                node.fromTerminal.push(m);
                if (m.t === "join") {
                  node.send({
                    t: "welcome", v: 1, sessionId: "s1", consultationId: "c1", groupId: "g1",
                    self: { terminalId: "t1", role: "requester", slot: 1 }, members: [], maxDatagramSize: 1200, pingIntervalMs: 60_000,
                    ...welcome,
                  } as NodeMessage);
                }
              }
            },
          }),
        };
      }
      async createUnidirectionalStream() {
        return new WritableStream<Uint8Array>();
      }
      close() {
        node.closed = true;
        node.closeResolve({ closeCode: 0, reason: "" });
      }
    }
    this.WebTransport = FakeWT as unknown as typeof WebTransport;
  }

  send(msg: NodeMessage) {
    this.control.push(frame(encodeControl(msg)));
  }

  /** One reliable object (already length-framed) on the node's object stream. */
  pushObject(framed: Uint8Array) {
    if (!this.objects) {
      this.objects = pipe<Uint8Array>();
      this.incomingUni.push(this.objects.readable);
    }
    this.objects.push(framed);
  }
}

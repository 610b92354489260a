// A capturing TCP proxy for plaintext HTTP/1.1 between the parts (clinic → edge, node → edge,
// edge → node control API), and a parser that splits what it saw into messages with decoded
// bodies (chunked, gzip, br, deflate), so a scan sees what a wire sniffer would after
// decoding. It can also cut requests whose head matches a pattern (a lost call, on purpose).
// Runs under Node and Deno (node:net, node:zlib).
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { brotliDecompressSync, gunzipSync, inflateSync } from "node:zlib";

export interface Connection {
  up: Buffer[];
  down: Buffer[];
}

export interface HttpMessage {
  direction: "request" | "response";
  /** Start line and headers, as sent. */
  head: string;
  /** The body after transfer and content decoding, as UTF-8 text. */
  body: string;
  /** Request line of the request (for a response: of the request it answers). */
  requestLine: string;
  status?: number;
}

export class CapturingProxy {
  readonly connections: Connection[] = [];
  /** Requests cut because their head matched `block`. */
  blocked = 0;
  /** Requests whose head matches are cut: the connection is dropped without an answer. */
  block?: RegExp;
  url = "";
  port = 0;
  private server!: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(readonly name: string, readonly targetPort: number) {}

  static async start(name: string, targetPort: number): Promise<CapturingProxy> {
    const p = new CapturingProxy(name, targetPort);
    p.server = createServer((client) => p.accept(client));
    await new Promise<void>((r) => p.server.listen(0, "127.0.0.1", r));
    p.port = (p.server.address() as { port: number }).port;
    p.url = `http://127.0.0.1:${p.port}`;
    return p;
  }

  private accept(client: Socket) {
    const conn: Connection = { up: [], down: [] };
    this.connections.push(conn);
    const upstream = createConnection({ host: "127.0.0.1", port: this.targetPort });
    this.sockets.add(client).add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on("data", (b: Buffer) => {
      if (this.block && this.block.test(b.toString("latin1").split("\r\n", 1)[0]!)) {
        this.blocked++;
        return end();
      }
      conn.up.push(Buffer.from(b));
      upstream.write(b);
    });
    upstream.on("data", (b: Buffer) => {
      conn.down.push(Buffer.from(b));
      client.write(b);
    });
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  }

  /** Every message seen both ways, decoded. */
  messages(): HttpMessage[] {
    const out: HttpMessage[] = [];
    for (const c of this.connections) {
      const reqs = parseHttp(Buffer.concat(c.up), "request");
      const resps = parseHttp(Buffer.concat(c.down), "response");
      reqs.forEach((m, i) => {
        out.push(m);
        const r = resps[i];
        if (r) out.push({ ...r, requestLine: m.requestLine });
      });
      for (const r of resps.slice(reqs.length)) out.push(r);
    }
    return out;
  }

  /** Raw bytes both ways as latin1 text (a fallback view for scans). */
  rawText(): string {
    return this.connections.map((c) => Buffer.concat(c.up).toString("latin1") + "\n" + Buffer.concat(c.down).toString("latin1")).join("\n");
  }

  get bytes(): number {
    return this.connections.reduce((s, c) => s + c.up.reduce((a, b) => a + b.length, 0) + c.down.reduce((a, b) => a + b.length, 0), 0);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

function decodeBody(raw: Buffer, encoding: string | undefined): Buffer {
  try {
    switch ((encoding ?? "").trim().toLowerCase()) {
      case "gzip": return gunzipSync(raw);
      case "br": return brotliDecompressSync(raw);
      case "deflate": return inflateSync(raw);
      default: return raw;
    }
  } catch {
    return raw; // truncated by a cut connection: scan what there is
  }
}

/** Splits one direction of an HTTP/1.1 connection into messages. */
export function parseHttp(buf: Buffer, direction: "request" | "response"): HttpMessage[] {
  const out: HttpMessage[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const headEnd = buf.indexOf("\r\n\r\n", pos, "latin1");
    if (headEnd < 0) {
      out.push({ direction, head: buf.subarray(pos).toString("latin1"), body: "", requestLine: "" });
      break;
    }
    const head = buf.subarray(pos, headEnd).toString("latin1");
    const lines = head.split("\r\n");
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const i = l.indexOf(":");
      if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
    }
    let p = headEnd + 4;
    let body: Buffer;
    const status = direction === "response" ? Number(lines[0]!.split(" ")[1]) : undefined;
    if ((headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
      const parts: Buffer[] = [];
      for (;;) {
        const lineEnd = buf.indexOf("\r\n", p, "latin1");
        if (lineEnd < 0) { p = buf.length; break; }
        const size = parseInt(buf.subarray(p, lineEnd).toString("latin1"), 16);
        p = lineEnd + 2;
        if (!Number.isFinite(size)) { p = buf.length; break; }
        if (size === 0) {
          const trailerEnd = buf.indexOf("\r\n", p, "latin1");
          p = trailerEnd < 0 ? buf.length : trailerEnd + 2;
          break;
        }
        parts.push(buf.subarray(p, Math.min(buf.length, p + size)));
        p += size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers.has("content-length")) {
      const n = Number(headers.get("content-length"));
      body = buf.subarray(p, Math.min(buf.length, p + n));
      p += n;
    } else if (direction === "response" && status !== 204 && status !== 304) {
      body = buf.subarray(p);
      p = buf.length;
    } else {
      body = Buffer.alloc(0);
    }
    out.push({
      direction, head, status,
      body: decodeBody(body, headers.get("content-encoding")).toString("utf8"),
      requestLine: direction === "request" ? lines[0]! : "",
    });
    pos = p;
  }
  return out;
}

// The few Deno APIs the media node uses, typed here so the rest of the code (and `tsc` with
// Node's types) needs no Deno declarations. Only adapter files and main.ts import this.

export interface QuicConnLike {
  close(info?: { closeCode: number; reason: string }): void;
  readonly closed: Promise<unknown>;
}
export interface QuicIncomingLike {
  accept(): Promise<QuicConnLike>;
}
export interface QuicListenerLike extends AsyncIterable<QuicIncomingLike> {
  stop(): void;
}
export interface QuicEndpointLike {
  readonly addr: { hostname: string; port: number };
  listen(opts: { cert: string; key: string; alpnProtocols: string[]; maxIdleTimeout?: number; keepAliveInterval?: number }): QuicListenerLike;
  close(info?: { closeCode: number; reason: string }): void;
}
export interface HttpServerLike {
  readonly finished: Promise<void>;
  readonly addr: { hostname: string; port: number };
  shutdown(): Promise<void>;
}

export interface DenoApi {
  env: { get(name: string): string | undefined; toObject(): Record<string, string> };
  QuicEndpoint: new (opts: { hostname?: string; port?: number }) => QuicEndpointLike;
  upgradeWebTransport(conn: QuicConnLike): Promise<WebTransport & { url: string }>;
  serve(
    opts: { hostname?: string; port?: number; onListen?: (addr: { hostname: string; port: number }) => void; signal?: AbortSignal },
    handler: (req: Request) => Response | Promise<Response>,
  ): HttpServerLike;
  readTextFile(path: string): Promise<string>;
  listen(opts: { hostname?: string; port: number; transport?: "tcp" }): { close(): void };
  addSignalListener(signal: "SIGTERM" | "SIGINT", fn: () => void): void;
  exit(code?: number): never;
  execPath(): string;
  args: string[];
}

export function denoApi(): DenoApi {
  const d = (globalThis as { Deno?: DenoApi }).Deno;
  if (!d) throw new Error("the media node runs under Deno (deno run --unstable-net media/main.ts)");
  return d;
}

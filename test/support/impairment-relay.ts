// A userspace UDP impairment relay on loopback. This kernel has no netem, so tests and benches
// put this between a terminal and a media node: the terminal connects to the relay's port, the
// relay forwards each client's packets to the node from a socket of its own and the node's
// answers back. QUIC does not care which address it reaches, so WebTransport works through it.
//
// Every decision (loss, burst state, jitter, reordering) comes from a seeded PRNG per direction,
// so a profile repeats exactly for the same packet sequence. Profiles can change mid-call.
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { prng } from "./prng.ts";

/** Impairment of one direction. All fields optional; an empty profile forwards untouched. */
export interface LinkProfile {
  /** Independent loss probability, 0..1. */
  loss?: number;
  /** Gilbert–Elliott burst loss: chance per packet to enter / leave the bad state, and loss in it. */
  burst?: { enter: number; leave: number; loss: number };
  /** One-way delay, ms. */
  delayMs?: number;
  /** Uniform extra delay 0..jitterMs, ms. Order is kept unless `reorder` says otherwise. */
  jitterMs?: number;
  /** Chance that a packet skips the order guard (may overtake or be overtaken). */
  reorder?: number;
  /** Bottleneck rate, kbit/s, with a drop-tail queue of `queueMs` worth of bytes. */
  rateKbps?: number;
  queueMs?: number;
  /** Drop everything (UDP blocked). */
  blocked?: boolean;
}

export interface RelayProfile {
  name?: string;
  /** Client → target (a terminal's uplink). */
  up?: LinkProfile;
  /** Target → client (a terminal's downlink). */
  down?: LinkProfile;
}

export interface DirectionStats {
  packets: number;
  bytes: number;
  delivered: number;
  dropped: number;
  queueDrops: number;
}

class Link {
  private rand: () => number;
  private bad = false;
  private busyUntil = 0;
  private lastDeparture = 0;
  readonly stats: DirectionStats = { packets: 0, bytes: 0, delivered: 0, dropped: 0, queueDrops: 0 };

  constructor(public profile: LinkProfile, seed: number) {
    this.rand = prng(seed);
  }

  /** When to deliver a packet of `size` bytes arriving at `now`, or undefined to drop it. */
  schedule(size: number, now: number): number | undefined {
    const p = this.profile;
    this.stats.packets++;
    this.stats.bytes += size;
    // Draw every random number for every packet so a profile change does not shift the stream.
    const rLoss = this.rand();
    const rBurst = this.rand();
    const rBurstLoss = this.rand();
    const rJitter = this.rand();
    const rReorder = this.rand();
    if (p.blocked) return this.drop();
    if (p.burst) {
      this.bad = this.bad ? rBurst >= p.burst.leave : rBurst < p.burst.enter;
      if (this.bad && rBurstLoss < p.burst.loss) return this.drop();
    }
    if (p.loss && rLoss < p.loss) return this.drop();
    let departure = now;
    if (p.rateKbps && p.rateKbps > 0) {
      const serialMs = (size * 8) / p.rateKbps;
      const start = Math.max(now, this.busyUntil);
      if (start - now > (p.queueMs ?? 200)) {
        this.stats.queueDrops++;
        return this.drop();
      }
      this.busyUntil = start + serialMs;
      departure = this.busyUntil;
    }
    departure += (p.delayMs ?? 0) + rJitter * (p.jitterMs ?? 0);
    const reorders = p.reorder !== undefined && rReorder < p.reorder;
    if (!reorders) departure = Math.max(departure, this.lastDeparture);
    this.lastDeparture = Math.max(this.lastDeparture, departure);
    this.stats.delivered++;
    return departure;
  }

  private drop(): undefined {
    this.stats.dropped++;
    return undefined;
  }
}

interface Scheduled { at: number; msg: Buffer; send: (m: Buffer) => void }

interface Flow {
  client: RemoteInfo;
  upstream: Socket;
  lastActive: number;
}

export interface RelayOptions {
  target: { host?: string; port: number };
  /** Port to listen on (127.0.0.1); 0 or omitted picks a free one. */
  port?: number;
  profile?: RelayProfile;
  seed?: number;
}

export class ImpairmentRelay {
  private sock!: Socket;
  private flows = new Map<string, Flow>();
  private up: Link;
  private down: Link;
  private upQueue: Scheduled[] = [];
  private downQueue: Scheduled[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private armedFor = Infinity;
  private closed = false;
  port = 0;
  profileName: string;

  private constructor(private readonly opts: RelayOptions) {
    const seed = opts.seed ?? 1;
    this.up = new Link(opts.profile?.up ?? {}, seed);
    this.down = new Link(opts.profile?.down ?? {}, seed ^ 0x5bd1e995);
    this.profileName = opts.profile?.name ?? "clean";
  }

  static async start(opts: RelayOptions): Promise<ImpairmentRelay> {
    const relay = new ImpairmentRelay(opts);
    await relay.listen();
    return relay;
  }

  /** The address a terminal should dial instead of the node's. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Switches both directions to a new profile; packets already scheduled keep their times. */
  setProfile(profile: RelayProfile): void {
    this.up.profile = profile.up ?? {};
    this.down.profile = profile.down ?? {};
    this.profileName = profile.name ?? "custom";
  }

  stats(): { up: DirectionStats; down: DirectionStats; flows: number } {
    return { up: { ...this.up.stats }, down: { ...this.down.stats }, flows: this.flows.size };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.upQueue = [];
    this.downQueue = [];
    const sockets = [this.sock, ...[...this.flows.values()].map((f) => f.upstream)];
    this.flows.clear();
    await Promise.all(sockets.map((s) => new Promise<void>((res) => {
      try { s.close(() => res()); } catch { res(); }
    })));
  }

  private listen(): Promise<void> {
    this.sock = createSocket("udp4");
    this.sock.on("message", (msg, rinfo) => this.fromClient(msg, rinfo));
    this.sock.on("error", () => { /* a closed peer port; QUIC retransmits */ });
    return new Promise((res, rej) => {
      this.sock.once("error", rej);
      this.sock.bind(this.opts.port ?? 0, "127.0.0.1", () => {
        this.port = this.sock.address().port;
        res();
      });
    });
  }

  private fromClient(msg: Buffer, client: RemoteInfo): void {
    const key = `${client.address}:${client.port}`;
    let flow = this.flows.get(key);
    if (!flow) {
      const upstream = createSocket("udp4");
      upstream.on("error", () => { /* see above */ });
      upstream.on("message", (reply) => this.fromTarget(reply, client));
      upstream.bind(0, "127.0.0.1");
      flow = { client, upstream, lastActive: 0 };
      this.flows.set(key, flow);
    }
    flow.lastActive = Date.now();
    const f = flow;
    this.forward(this.up, msg, (m) => f.upstream.send(m, this.opts.target.port, this.opts.target.host ?? "127.0.0.1"));
  }

  private fromTarget(msg: Buffer, client: RemoteInfo): void {
    this.forward(this.down, msg, (m) => this.sock.send(m, client.port, client.address));
  }

  private forward(link: Link, msg: Buffer, send: (m: Buffer) => void): void {
    if (this.closed) return;
    const now = performance.now();
    const at = link.schedule(msg.length, now);
    if (at === undefined) return;
    // One queue per direction, sorted by departure, drained by one timer: separate timers per
    // packet would let Node fire equal deadlines out of order.
    const q = link === this.up ? this.upQueue : this.downQueue;
    if (q.length === 0 && at <= now + 0.5) {
      send(msg);
      return;
    }
    let i = q.length;
    while (i > 0 && q[i - 1]!.at > at) i--;
    q.splice(i, 0, { at, msg, send });
    this.arm();
  }

  private arm(): void {
    if (this.closed) return;
    const next = Math.min(this.upQueue[0]?.at ?? Infinity, this.downQueue[0]?.at ?? Infinity);
    if (next === Infinity || next >= this.armedFor) return;
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = next;
    this.timer = setTimeout(() => this.drain(), Math.max(0, next - performance.now()));
  }

  private drain(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    if (this.closed) return;
    const now = performance.now() + 0.5;
    for (const q of [this.upQueue, this.downQueue]) {
      let n = 0;
      while (n < q.length && q[n]!.at <= now) {
        const p = q[n++]!;
        p.send(p.msg);
      }
      q.splice(0, n);
    }
    this.arm();
  }
}

/** The profiles of the adverse-networks work, by name. Rates are a terminal's uplink. */
export const PROFILES: Record<string, RelayProfile> = {
  clean: { name: "clean" },
  "3% loss": { name: "3% loss", up: { loss: 0.03 }, down: { loss: 0.03 } },
  "10% loss": { name: "10% loss", up: { loss: 0.1 }, down: { loss: 0.1 } },
  "200 ms RTT + jitter": { name: "200 ms RTT + jitter", up: { delayMs: 100, jitterMs: 20 }, down: { delayMs: 100, jitterMs: 20 } },
  "1 Mbit/s uplink": { name: "1 Mbit/s uplink", up: { rateKbps: 1000, queueMs: 150 } },
  "300 kbit/s uplink": { name: "300 kbit/s uplink", up: { rateKbps: 300, queueMs: 200 } },
  "1 Mbit/s + 3% loss": { name: "1 Mbit/s + 3% loss", up: { rateKbps: 1000, queueMs: 150, loss: 0.03 }, down: { loss: 0.03 } },
  "burst loss": { name: "burst loss", up: { burst: { enter: 0.01, leave: 0.3, loss: 0.8 } }, down: { burst: { enter: 0.01, leave: 0.3, loss: 0.8 } } },
  "UDP blocked": { name: "UDP blocked", up: { blocked: true }, down: { blocked: true } },
};

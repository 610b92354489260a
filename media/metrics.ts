// Process load figures for the heartbeat: event-loop lag and CPU share.
import process from "node:process";

export class LoadMeter {
  private lags: number[] = [];
  private timer?: ReturnType<typeof setInterval>;
  private cpuAt = process.cpuUsage();
  private wallAt = performance.now();

  start(everyMs = 100): void {
    this.cpuAt = process.cpuUsage();
    this.wallAt = performance.now();
    let expected = performance.now() + everyMs;
    this.timer = setInterval(() => {
      const now = performance.now();
      this.lags.push(Math.max(0, now - expected));
      if (this.lags.length > 600) this.lags.shift();
      expected = now + everyMs;
    }, everyMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** p99 event-loop lag since the last call, ms. */
  takeLoopLagMs(): number {
    const sorted = this.lags.sort((a, b) => a - b);
    const p99 = sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]! : 0;
    this.lags = [];
    return Math.round(p99 * 10) / 10;
  }

  private lastCpu = 0;

  /**
   * Share of one core used over the last window of at least 2 s, 0..n. Shorter windows give
   * the previous figure: start-up (module loading, key generation) is no measure of load.
   */
  takeCpu(): number {
    const wall = (performance.now() - this.wallAt) * 1000;
    if (wall < 2_000_000) return this.lastCpu;
    const cpu = process.cpuUsage(this.cpuAt);
    this.cpuAt = process.cpuUsage();
    this.wallAt = performance.now();
    this.lastCpu = Math.round(((cpu.user + cpu.system) / wall) * 1000) / 1000;
    return this.lastCpu;
  }
}

/** What the keepalive asks of the connection it watches. */
export interface KeepaliveHooks {
  /** Write a PINGREQ. */
  ping(): void;
  /** The broker has been silent too long: close the connection with this error. Called once. */
  dead(err: Error): void;
}

/**
 * MQTT keepalive from the client's side, which is also how a hung broker is found: a broker that stops answering
 * (SIGSTOP, a cut network) leaves the socket open, and only the missing PINGRESP tells.
 *
 * A PINGREQ goes out every half interval, whatever else is written (PUBACKs may be held for long), so the broker
 * hears from us well within its 1.5 x keepalive, and a healthy broker, answering each at once, is never silent for
 * a whole interval. When nothing at all came from it for `seconds`, `dead` is called: about one interval after the
 * broker went quiet, with at least one PINGREQ unanswered for half of it. While the socket is paused (the window
 * holds a large excess) the broker's packets sit unread in TCP buffers, so silence proves nothing: the clock
 * restarts on resume.
 */
export class Keepalive {
  private readonly intervalMs: number;
  private lastHeard = Date.now();
  private nextPingAt = 0;
  private paused = false;
  private running = false;
  private timer: NodeJS.Timeout | undefined;

  /** @param seconds the keepalive in force (the broker's Server Keep Alive if it sent one); 0 disables it */
  constructor(
    private readonly seconds: number,
    private readonly hooks: KeepaliveHooks,
  ) {
    this.intervalMs = seconds * 1_000;
  }

  /** Starts watching (the connection is accepted). Does nothing for a keepalive of 0. */
  start(): void {
    if (this.seconds <= 0 || this.running) return;
    this.running = true;
    const now = Date.now();
    this.lastHeard = now;
    this.nextPingAt = now + this.intervalMs / 2;
    this.schedule(now);
  }

  /** A packet came from the broker. Cheap: called for every chunk read. */
  heard(): void {
    this.lastHeard = Date.now();
  }

  /** Reading from the socket stopped or started again. */
  setPaused(paused: boolean): void {
    if (this.paused && !paused) this.lastHeard = Date.now();
    this.paused = paused;
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** One timer for both duties: the next PINGREQ, or the moment the broker will have been silent too long. */
  private schedule(now: number): void {
    const deadline = this.paused ? Number.POSITIVE_INFINITY : this.lastHeard + this.intervalMs;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, Math.min(this.nextPingAt, deadline) - now));
    this.timer.unref();
  }

  private onTimer(): void {
    if (!this.running) return;
    const now = Date.now();
    if (this.silentTooLong(now)) {
      // Timers run before pending socket reads: after the event loop was blocked, the broker's answer may be
      // waiting unread. Judge again once this turn's I/O is read.
      setImmediate(() => {
        if (!this.running) return;
        const later = Date.now();
        if (this.silentTooLong(later)) this.giveUp(later - this.lastHeard);
        else this.schedule(later);
      });
      return;
    }
    if (now >= this.nextPingAt) {
      this.nextPingAt = now + this.intervalMs / 2;
      this.hooks.ping();
    }
    this.schedule(now);
  }

  private silentTooLong(now: number): boolean {
    return !this.paused && now - this.lastHeard >= this.intervalMs;
  }

  private giveUp(silentMs: number): void {
    this.stop();
    this.hooks.dead(
      new Error(
        `no PINGRESP within ${this.seconds} s (keepalive): nothing from the broker for ${(silentMs / 1_000).toFixed(1)} s`,
      ),
    );
  }
}

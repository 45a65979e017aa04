import { sleep } from "./backoff.js";
import type { Logger } from "./log.js";

/** How long a start that was told to give up (its AbortSignal aborted) may take to do so. */
const ABORT_GRACE_MS = 5_000;
/** How long the process may outlive a finished stop (a handle left open somewhere) before it is ended. */
const EXIT_GRACE_MS = 5_000;

/** The reason a start's AbortSignal carries when a signal arrived before the service was up. */
export class StartAborted extends Error {
  override readonly name = "StartAborted";
  constructor(readonly signal: NodeJS.Signals) {
    super(`${signal} received before the service was up`);
  }
}

/**
 * Once the service has settled, nothing may keep the process alive: if it still runs EXIT_GRACE_MS later (a timer
 * or socket some part failed to release), it exits with the code already chosen. The timer is unref'd, so a
 * process that ends by itself is not held up by it.
 */
function exitSoon(log: Logger): void {
  setTimeout(() => {
    log.warn(
      { afterMs: EXIT_GRACE_MS },
      "still running after the service stopped (a handle left open); exiting",
    );
    process.exit(process.exitCode ?? 0);
  }, EXIT_GRACE_MS).unref();
}

/**
 * Runs a long-lived service until SIGINT or SIGTERM, then lets it settle its in-flight work and resolves with
 * exit code 0. A second signal while stopping gives up at once with exit code 1 (nothing acked is lost: what was
 * not acknowledged upstream is redelivered).
 *
 * A signal stops the service in every state. `start` gets an AbortSignal that aborts (reason: `StartAborted`) when
 * a signal arrives before it resolved: it must then give up connecting, release what it opened and reject (or
 * resolve, and the service it returns is stopped at once). A start that ignores the signal is waited for
 * ABORT_GRACE_MS, then the process exits anyway (what it took in and did not acknowledge is redelivered).
 */
export async function runUntilSignal(
  log: Logger,
  start: (signal: AbortSignal) => Promise<{ stop(): Promise<void> }>,
): Promise<number> {
  let signalled: (sig: NodeJS.Signals) => void = () => undefined;
  const signal = new Promise<NodeJS.Signals>((resolve) => {
    signalled = resolve;
  });
  const onSignal = (sig: NodeJS.Signals) => signalled(sig);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const force = (again: NodeJS.Signals) => {
    log.warn({ signal: again }, "second signal: exiting without settling");
    process.exit(1);
  };
  const abort = new AbortController();
  try {
    const starting = start(abort.signal);
    const first = await Promise.race([
      starting.then((service) => ({ service })),
      signal.then((sig) => ({ sig })),
    ]);
    if ("sig" in first) {
      log.warn({ signal: first.sig }, "signal received before the service was up; stopping the start");
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.once("SIGINT", force);
      process.once("SIGTERM", force);
      abort.abort(new StartAborted(first.sig));
      const grace = new AbortController();
      const outcome = await Promise.race([
        starting.then(
          (service) => ({ service }),
          (err: unknown) => ({ err }),
        ),
        sleep(ABORT_GRACE_MS, grace.signal).then(() => ({ timedOut: true as const })),
      ]);
      grace.abort();
      if ("timedOut" in outcome) {
        log.error(
          { afterMs: ABORT_GRACE_MS },
          "the start did not give up after the signal; exiting anyway (what was not acknowledged is redelivered)",
        );
        process.exit(0);
      }
      if ("service" in outcome) await outcome.service.stop();
      else if (!(outcome.err instanceof StartAborted)) {
        const err = outcome.err instanceof Error ? outcome.err.message : String(outcome.err);
        log.warn({ err }, "the start failed while giving up");
      }
      log.info("stopped before the service was up");
      exitSoon(log);
      return 0;
    }
    const running = first.service;
    const sig = await signal;
    log.info({ signal: sig }, "stopping: settling in-flight work");
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.once("SIGINT", force);
    process.once("SIGTERM", force);
    await running.stop();
    exitSoon(log);
    return 0;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

import type { Logger } from "./log.js";

/**
 * Runs a long-lived service until SIGINT or SIGTERM, then lets it settle its in-flight work and resolves with
 * exit code 0. A second signal while stopping gives up at once with exit code 1 (nothing acked is lost: what was
 * not acknowledged upstream is redelivered).
 */
export async function runUntilSignal(
  log: Logger,
  start: () => Promise<{ stop(): Promise<void> }>,
): Promise<number> {
  let signalled: (sig: NodeJS.Signals) => void = () => undefined;
  const signal = new Promise<NodeJS.Signals>((resolve) => {
    signalled = resolve;
  });
  const onSignal = (sig: NodeJS.Signals) => signalled(sig);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    const running = await Promise.race([start(), signal.then(() => undefined)]);
    if (!running) {
      log.warn("signal received before the service was up; exiting");
      return 0;
    }
    const sig = await signal;
    log.info({ signal: sig }, "stopping: settling in-flight work");
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    const force = (again: NodeJS.Signals) => {
      log.warn({ signal: again }, "second signal: exiting without settling");
      process.exit(1);
    };
    process.once("SIGINT", force);
    process.once("SIGTERM", force);
    await running.stop();
    return 0;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

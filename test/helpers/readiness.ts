/**
 * A service's health endpoint seen from a test, at any address (a service inside a network namespace listens on
 * the namespace's address): one request with a timeout, one metric, and a watch of `/readyz` that records when a
 * fault was noticed and when it was over.
 */
import { type Running, running } from "../../common/pipeline.js";

const READINESS_POLL_MS = 100;
/** A service behind a cut or a hung peer must not hang the test's own requests. */
const HTTP_TIMEOUT_MS = 2_000;

/** `GET http://host:port/path`, with a timeout: a service behind a cut must not hang the test. */
export async function httpAt(
  host: string,
  port: number,
  path: string,
): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${host}:${port}${path}`, { signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  return { status: res.status, body: await res.text() };
}

/** The value of a Prometheus counter or gauge without labels served at host:port (0 when absent). */
export async function metricAt(host: string, port: number, name: string): Promise<number> {
  const { body } = await httpAt(host, port, "/metrics");
  const line = body.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

/** One answer of `/readyz` that differed from the one before. */
export interface ReadinessChange {
  /** `Date.now()` when it was seen. */
  readonly at: number;
  readonly status: number;
  readonly body: string;
}

/** Polls a service's `/readyz` every 100 ms and keeps each change, so a test can say when a fault was noticed. */
export interface ReadinessWatch extends Running {
  readonly changes: readonly ReadinessChange[];
  /** The first 503 seen at or after `since`, if any. */
  firstNotReady(since: number): ReadinessChange | undefined;
  /** The first 200 seen at or after `since`, if any. */
  firstReady(since: number): ReadinessChange | undefined;
}

/** Starts polling `http://host:port/readyz`; an unanswered poll counts as status 0. */
export function watchReadiness(host: string, port: number): ReadinessWatch {
  const changes: ReadinessChange[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const seen = await httpAt(host, port, "/readyz").catch((err: unknown) => ({
        status: 0,
        body: String(err),
      }));
      const body = seen.body.trim();
      const prev = changes.at(-1);
      if (!prev || prev.status !== seen.status || prev.body !== body)
        changes.push({ at: Date.now(), status: seen.status, body });
      await new Promise((resolve) => setTimeout(resolve, READINESS_POLL_MS));
    }
  })();
  const watch = {
    changes,
    firstNotReady: (since: number) => changes.find((c) => c.at >= since && c.status === 503),
    firstReady: (since: number) => changes.find((c) => c.at >= since && c.status === 200),
  };
  return running(watch, async () => {
    stopped = true;
    await loop;
  });
}

import { randomBytes } from "node:crypto";
import amqp from "amqplib";
import mqtt from "mqtt";
import { redactUrl } from "../common/config.js";
import type { TlsMaterial } from "../common/tls.js";

/** How long a probe waits for a broker or a service before it reports it unreachable. */
export const PROBE_TIMEOUT_MS = 5_000;

/** One line saying why an operation failed, with any URL's password masked. */
export function reasonOf(err: unknown): string {
  const message = err instanceof Error ? err.message || err.name : String(err);
  return redactUrl(message.split("\n")[0] ?? "");
}

/**
 * Opens an AMQP connection (with `tls`'s CA, client certificate and key for `amqps://`) and closes it again; throws
 * with the broker's or the socket's reason.
 */
export async function probeAmqp(url: string, tls: TlsMaterial = {}): Promise<void> {
  const conn = await amqp.connect(url, { ...tls, timeout: PROBE_TIMEOUT_MS });
  conn.on("error", () => undefined);
  await conn.close();
}

/**
 * Sends one MQTT CONNECT with a throwaway client id and a clean session (so no session is left on the broker),
 * then disconnects, over TLS with `tls`'s files for `mqtts://`; throws with the broker's reason (e.g. "Connection
 * refused: Not authorized").
 */
export async function probeMqtt(
  url: string,
  auth: { username?: string; password?: string } = {},
  tls: TlsMaterial = {},
): Promise<void> {
  const client = await mqtt.connectAsync(url, {
    ...tls,
    clientId: `telemetry-check-${randomBytes(6).toString("hex")}`,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: PROBE_TIMEOUT_MS,
    ...auth,
  });
  await client.endAsync();
}

/** What a service's `/readyz` said: ready, not ready with its reason, or unreachable with the error. */
export type Readiness =
  | { readonly state: "ready" }
  | { readonly state: "not ready"; readonly reason: string }
  | { readonly state: "unreachable"; readonly reason: string };

/** GET `<base>/readyz`. */
export async function readiness(base: string): Promise<Readiness> {
  try {
    const res = await fetch(new URL("/readyz", base), { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    const body = (await res.text()).trim();
    if (res.ok) return { state: "ready" };
    return { state: "not ready", reason: redactUrl(body.replace(/^not ready:\s*/, "")) };
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    return { state: "unreachable", reason: reasonOf(cause ?? err) };
  }
}

/** GET `<base>/metrics` and parse the unlabelled samples and the sums over labels, by metric name. */
export async function scrape(base: string): Promise<Map<string, number> | undefined> {
  try {
    const res = await fetch(new URL("/metrics", base), { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    if (!res.ok) return undefined;
    return parseMetrics(await res.text());
  } catch {
    return undefined;
  }
}

/** Prometheus text format to name -> value, adding up the series of a labelled metric. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const value = Number(m[2]);
    if (Number.isFinite(value)) out.set(m[1] as string, (out.get(m[1] as string) ?? 0) + value);
  }
  return out;
}

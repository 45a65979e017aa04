/**
 * What `telemetry check` warns about in a configuration that works but is open (docs/operations.md, "Deploying
 * safely"): an MQTT broker reached without credentials (so it accepts anonymous clients), RabbitMQ's well-known
 * guest user on a host that is not loopback, and `serve` beyond loopback without TLS or without a token. Pure: the
 * configuration is the one the service would run with.
 */
import { splitUrlList } from "../common/config.js";
import { isLoopback } from "../serve/guard.js";

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

function urlOf(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

/** One line each; none for a configuration that is closed. */
export function securityWarnings(service: string, config: Readonly<Record<string, unknown>>): string[] {
  const out: string[] = [];
  for (const raw of splitUrlList(str(config.amqpUrl) ?? "")) {
    const url = urlOf(raw);
    // amqplib logs in as guest when the URL names no user.
    const user = url === undefined ? undefined : decodeURIComponent(url.username) || "guest";
    if (url !== undefined && user === "guest" && !isLoopback(url.hostname))
      out.push(
        `RabbitMQ user guest on ${url.hostname}: its password is known to everyone; give the services a user of their own`,
      );
  }
  const mqttUrl = urlOf(str(config.mqttUrl) ?? "");
  if (mqttUrl !== undefined && !mqttUrl.username && !str(config.mqttUsername) && !str(config.mqttCertFile))
    out.push(
      `MQTT without a user name or client certificate: the broker at ${mqttUrl.hostname} accepts anonymous clients, so anyone who reaches it can publish readings`,
    );
  const host = str(config.host);
  if (service === "serve" && host !== undefined && !isLoopback(host)) {
    if (!str(config.tlsCertFile))
      out.push(
        `serve listens on ${host} without TLS (SERVE_TLS_CERT_FILE): tokens and data cross the network in clear text`,
      );
    if (config.auth === "none")
      out.push(`serve listens on ${host} with SERVE_AUTH=none: anyone who reaches it reads the data`);
  }
  return out;
}

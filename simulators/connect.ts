// The simulator's MQTT connection: the first connect, with its security options and timeout, and the end.
import { connect, type IClientOptions, type MqttClient } from "mqtt";
import { redactUrl } from "../common/config.js";
import type { MqttSecurityConfig } from "../common/settings.js";
import { describeTlsError, readTls } from "../common/tls.js";

/** How long the first connection may take before the broker counts as unreachable. */
export const CONNECT_TIMEOUT_MS = 10_000;
const RECONNECT_PERIOD_MS = 1_000;
const KEEPALIVE_S = 30;
const END_TIMEOUT_MS = 2_000;

/**
 * The broker did not accept the first connection; nothing was published. The message names the broker (the URL's
 * password masked) and the reason, a TLS refusal naming the setting to check.
 */
export class BrokerUnreachableError extends Error {
  override readonly name = "BrokerUnreachableError";
  /** The broker's URL, its password masked. */
  readonly url: string;

  constructor(url: string, options?: { cause?: unknown }) {
    const cause = options?.cause;
    const why =
      describeTlsError(cause, "MQTT") ??
      (cause instanceof Error ? cause.message : String(cause ?? "no answer"));
    const shown = redactUrl(url);
    super(`cannot reach the MQTT broker at ${shown}: ${why}`, options);
    this.url = shown;
  }
}

/** MQTT.js's options for the broker's TLS files and credentials (the files read once, here). */
export function securityOptions(config: MqttSecurityConfig): IClientOptions {
  const tls = readTls({
    caFile: config.mqttCaFile,
    certFile: config.mqttCertFile,
    keyFile: config.mqttKeyFile,
  });
  return {
    ...tls,
    ...(config.mqttUsername === undefined ? {} : { username: config.mqttUsername }),
    ...(config.mqttPassword === undefined ? {} : { password: config.mqttPassword }),
  };
}

/**
 * Connects to `url` as `clientId` (clean session, MQTT 3.1.1, reconnecting later on its own) and resolves once the
 * first CONNACK arrives; rejects with BrokerUnreachableError on an error, a close, `signal` or CONNECT_TIMEOUT_MS.
 */
export function connectOnce(
  url: string,
  security: IClientOptions,
  clientId: string,
  signal: AbortSignal | undefined,
): Promise<MqttClient> {
  const client = connect(url, {
    ...security,
    clientId,
    clean: true,
    protocolVersion: 4,
    keepalive: KEEPALIVE_S,
    reconnectPeriod: RECONNECT_PERIOD_MS,
    connectTimeout: CONNECT_TIMEOUT_MS,
  });
  return new Promise<MqttClient>((resolve, reject) => {
    const fail = (cause: unknown) => {
      cleanup();
      client.on("error", () => {});
      client.end(true);
      reject(new BrokerUnreachableError(url, { cause }));
    };
    const onConnect = () => {
      cleanup();
      resolve(client);
    };
    const onError = (err: Error) => fail(err);
    const onClose = () => fail(new Error("connection closed before CONNACK"));
    const onAbort = () => fail(new Error("stopped by signal"));
    const timer = setTimeout(
      () => fail(new Error(`no CONNACK within ${CONNECT_TIMEOUT_MS} ms`)),
      CONNECT_TIMEOUT_MS,
    );
    const cleanup = () => {
      clearTimeout(timer);
      client.off("connect", onConnect);
      client.off("error", onError);
      client.off("close", onClose);
      signal?.removeEventListener("abort", onAbort);
    };
    client.once("connect", onConnect);
    client.once("error", onError);
    client.once("close", onClose);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Disconnects, gracefully (waiting for outstanding publishes) or not; forces the end after END_TIMEOUT_MS. */
export function endClient(client: MqttClient, graceful: boolean): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      client.end(true);
      resolve();
    }, END_TIMEOUT_MS);
    client.end(!graceful, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

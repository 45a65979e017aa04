/** What went wrong with RabbitMQ, in the operator's words: pure, unit-tested without a broker. */

/** TCP connect plus the AMQP handshake: a hung node accepts the TCP connection (the kernel does) and never answers. */
export const CONNECT_TIMEOUT_MS = 10_000;

/** `host:port` of an AMQP URL, the one way the broker is named in logs and health (never the credentials). */
export function brokerAddress(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || (u.protocol === "amqps:" ? 5_671 : 5_672)}`;
}

/**
 * Thrown by `onConnect` for a mistake that retrying cannot cure until an operator changes the broker or the
 * configuration (a queue that exists with other arguments). Its message is the one line the operator needs; the
 * session shows it as it is and retries every 10 s, so fixing the cause heals the service without a restart.
 */
export class AmqpConfigurationError extends Error {
  override readonly name = "AmqpConfigurationError";
}

/** What went wrong with a connection, in one line for the log and `/readyz`, and whether to retry slowly. */
export interface AmqpProblem {
  readonly text: string;
  /** A mistake (login refused, queue declared otherwise): retried every 10 s rather than with fast backoff. */
  readonly mistake: boolean;
}

/**
 * Describes an error from connecting to `broker` (`host:port`), from `onConnect`, or the one a lost connection
 * closed with. Pure: amqplib's and Node's messages in, the operator's line out. Never includes credentials
 * (amqplib's messages hold none and the URL is never quoted).
 */
export function describeAmqpError(err: unknown, broker: string): AmqpProblem {
  if (err instanceof AmqpConfigurationError) return { text: err.message, mistake: true };
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | undefined)?.code;
  if (/ACCESS[-_]REFUSED/.test(message)) {
    return {
      text: `${broker} refused the login (ACCESS_REFUSED): check the user name and password of AMQP_URL`,
      mistake: true,
    };
  }
  if (/NOT[-_]ALLOWED/.test(message) || /^Expected ConnectionOpenOk; got <ConnectionClose/.test(message)) {
    return {
      text: `${broker} refused to open the virtual host of AMQP_URL (it does not exist, or the user may not use it)`,
      mistake: true,
    };
  }
  if (message === "connect ETIMEDOUT" || code === "ETIMEDOUT") {
    return {
      text: `${broker} did not answer within ${CONNECT_TIMEOUT_MS / 1_000} s (a hung broker or a network cut)`,
      mistake: false,
    };
  }
  if (message === "Heartbeat timeout") {
    return {
      text: `${broker} stopped answering: no heartbeat (a hung broker or a network cut)`,
      mistake: false,
    };
  }
  if (typeof code === "string" && /CERT|SELF_SIGNED|^UNABLE_TO_|^ERR_TLS|^ERR_SSL/.test(code)) {
    return {
      // OpenSSL's own message for an alert (ERR_SSL_*) runs over several lines; its code says it all.
      text: `${broker}: TLS refused (${/^ERR_SSL_/.test(code) ? code : `${code}: ${message}`}): check AMQP_CA_FILE, AMQP_CERT_FILE and AMQP_KEY_FILE`,
      mistake: true,
    };
  }
  const closed = /^Connection closed: \d+ \([A-Z-]+\) with message "(.*)"$/.exec(message);
  if (closed) return { text: `${broker} closed the connection (${closed[1]})`, mistake: false };
  if (message === "Unexpected close") {
    return {
      text: `${broker} closed the socket without a word (RabbitMQ killed or restarted?)`,
      mistake: false,
    };
  }
  switch (code) {
    case "ECONNREFUSED":
      return {
        text: `${broker} refused the connection (ECONNREFUSED: RabbitMQ down or a wrong port)`,
        mistake: false,
      };
    case "ECONNRESET":
      return { text: `${broker} reset the connection (ECONNRESET)`, mistake: false };
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return { text: `${broker}: host name not found (${code})`, mistake: false };
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return { text: `${broker} unreachable (${code})`, mistake: false };
  }
  return { text: `${broker}: ${message}`, mistake: false };
}

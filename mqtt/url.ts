const DEFAULT_PORT = 1_883;
/** IANA's port for MQTT over TLS. */
const DEFAULT_TLS_PORT = 8_883;

/** Where the MQTT broker is, whether to speak TLS to it, and the credentials its URL carries. */
export interface BrokerAddress {
  readonly host: string;
  readonly port: number;
  /** `mqtts://`: the connection is TLS. */
  readonly tls: boolean;
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** `host:port`, for logs, errors and `/readyz`; never the credentials. */
  readonly display: string;
}

/**
 * Parses `mqtt://[user[:password]@]host[:port]` (or `tcp://`; port 1883 when absent) and `mqtts://` (TLS, port 8883
 * when absent); user and password percent-decoded. Throws an Error naming the URL's problem when it is not a URL or
 * has another scheme; the message never holds the password.
 */
export function parseBrokerUrl(url: string): BrokerAddress {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // The URL may hold a password, so neither it nor the parser's error (which quotes it) goes into the message.
    throw new Error("MQTT URL is not a URL (expected mqtt://host:port)");
  }
  const tls = parsed.protocol === "mqtts:";
  if (!tls && parsed.protocol !== "mqtt:" && parsed.protocol !== "tcp:") {
    throw new Error(
      `MQTT URL scheme ${JSON.stringify(parsed.protocol)} is not supported (use mqtt://, tcp:// or mqtts://)`,
    );
  }
  const port = parsed.port === "" ? (tls ? DEFAULT_TLS_PORT : DEFAULT_PORT) : Number(parsed.port);
  return {
    host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
    port,
    tls,
    username: parsed.username === "" ? undefined : decodeURIComponent(parsed.username),
    password: parsed.password === "" ? undefined : decodeURIComponent(parsed.password),
    display: `${parsed.hostname}:${port}`,
  };
}

import { readFileSync } from "node:fs";
import { splitUrlList } from "./config.js";

/** The paths of a broker's TLS files, as the settings name them (`MQTT_CA_FILE`, ...); each may be unset. */
export interface TlsFiles {
  /** PEM certificates of the authorities that may sign the broker's certificate (unset: the system's). */
  readonly caFile?: string | undefined;
  /** PEM client certificate for mutual TLS. */
  readonly certFile?: string | undefined;
  /** PEM private key of the client certificate. */
  readonly keyFile?: string | undefined;
}

/** What `tls.connect` takes from those files: their contents, read once at start. */
export interface TlsMaterial {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

/**
 * Reads the files that are set, once, synchronously (a service does so at start, before it connects). Throws an
 * Error naming the file that cannot be read; never quotes a file's contents (a key is a secret).
 */
export function readTls(files: TlsFiles): TlsMaterial {
  const read = (path: string | undefined): Buffer | undefined => {
    if (path === undefined || path === "") return undefined;
    try {
      return readFileSync(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new Error(`cannot read ${JSON.stringify(path)} (${code})`);
    }
  };
  const ca = read(files.caFile);
  const cert = read(files.certFile);
  const key = read(files.keyFile);
  return {
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
  };
}

/**
 * Checks a PEM file as a setting names it: readable, and holding a PEM block (`-----BEGIN`). Returns the path;
 * throws an Error saying what is wrong (the file's contents never quoted).
 */
export function parsePemFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`cannot read the file (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
  if (!text.includes("-----BEGIN ")) throw new Error("must be a PEM file (-----BEGIN ...)");
  return path;
}

/** Which broker a TLS problem concerns, by the prefix of its settings. */
export type BrokerKind = "MQTT" | "AMQP";

/**
 * A mistake across settings: TLS files given for a plain (`mqtt://`, `amqp://`) URL would be silently unused and
 * the connection unencrypted. One line naming the settings, or undefined when they agree.
 */
export function tlsMismatch(kind: BrokerKind, url: string, files: TlsFiles): string | undefined {
  const given = (["CA", "CERT", "KEY"] as const).filter(
    (_, i) => [files.caFile, files.certFile, files.keyFile][i] !== undefined,
  );
  if (given.length === 0) return undefined;
  const secure = kind === "MQTT" ? /^mqtts:/i : /^amqps:/i;
  const urls = splitUrlList(url);
  if (urls.every((u) => secure.test(u))) return undefined;
  const scheme = kind === "MQTT" ? "mqtts://" : "amqps://";
  const names = given.map((g) => `${kind}_${g}_FILE`).join(", ");
  return `${names} set but ${kind}_URL is not ${scheme}: the connection would not use TLS; use ${scheme}host:port`;
}

/** OpenSSL and Node say the broker's certificate is not one we trust (or not for this host). */
const UNTRUSTED =
  /^(?:UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(?:_LOCALLY)?|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_\w+|ERR_TLS_CERT_ALTNAME_INVALID)$/;
/** The broker sent an alert about our certificate: missing, unknown authority, bad, expired, revoked. */
const CLIENT_CERT_REFUSED =
  /^ERR_SSL_(?:SSLV3|TLSV1|TLSV13)_ALERT_(?:BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_\w+|ACCESS_DENIED)$/;

/**
 * A TLS error of a connection to a broker as one line for the log and `/readyz`, naming the settings to check
 * (e.g. `TLS: the broker's certificate is not trusted (UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first
 * certificate): check MQTT_CA_FILE`); undefined when `err` is not a TLS error. Pure.
 */
export function describeTlsError(err: unknown, kind: BrokerKind): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== "string") return undefined;
  const message = err instanceof Error ? err.message.split("\n")[0] : "";
  if (UNTRUSTED.test(code)) {
    return `TLS: the broker's certificate is not trusted (${code}: ${message}): check ${kind}_CA_FILE`;
  }
  if (CLIENT_CERT_REFUSED.test(code)) {
    return `TLS: the broker refused our client certificate (${code}): check ${kind}_CERT_FILE and ${kind}_KEY_FILE`;
  }
  if (/^ERR_(?:SSL|TLS|OSSL)_/.test(code)) return `TLS failed (${code}: ${message})`;
  return undefined;
}

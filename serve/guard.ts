/**
 * Who may ask serve anything (docs/contract.md, "Serve security"): bearer tokens on `/api/*`, the Host check that
 * stops DNS rebinding on a loopback listener, and CORS only for the origins the operator lists. Pure checks plus
 * one Hono middleware; the settings are read by serve/command.ts.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { isIP } from "node:net";
import type { MiddlewareHandler } from "hono";

/** Shorter tokens are refused at start: a token is the only thing between the network and the data. */
export const MIN_TOKEN_CHARS = 16;

/**
 * The tokens of `SERVE_TOKEN` (or the file of `SERVE_TOKEN_FILE`): one a line, blank lines and surrounding spaces
 * ignored, so a second token can be added while clients move to it, then the first removed. Throws when there is
 * none or one is shorter than {@link MIN_TOKEN_CHARS} (the message never quotes a token).
 */
export function parseTokens(raw: string): readonly string[] {
  const tokens = raw
    .split(/\r?\n/)
    .map((t) => t.trim())
    .filter(Boolean);
  if (tokens.length === 0) throw new Error("must hold at least one token");
  tokens.forEach((t, i) => {
    if (t.length < MIN_TOKEN_CHARS || /\s/.test(t))
      throw new Error(`token ${i + 1} must be ${MIN_TOKEN_CHARS} or more characters without spaces`);
  });
  return tokens;
}

const digest = (text: string) => createHash("sha256").update(text).digest();

/**
 * Whether `presented` is one of `tokens`, in time that does not depend on how much of a token matched: both sides
 * are compared as SHA-256 digests (equal lengths) with timingSafeEqual, and every token is compared.
 */
export function tokenAccepted(tokens: readonly string[], presented: string): boolean {
  const given = digest(presented);
  let accepted = false;
  for (const t of tokens) accepted = timingSafeEqual(digest(t), given) || accepted;
  return accepted;
}

/** The host name of a Host header (`127.0.0.1:8080`, `[::1]:8080`, `localhost`), lower-cased, without the port. */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith("[")) return h.slice(1, h.indexOf("]") >>> 0);
  const colon = h.indexOf(":");
  return colon === h.lastIndexOf(":") && colon >= 0 ? h.slice(0, colon) : h;
}

/** A loopback name or address: `localhost` (and `*.localhost`), 127.0.0.0/8, `::1`. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, "");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  return isIP(h) === 6 && (h === "::1" || h === "0:0:0:0:0:0:0:1" || h.startsWith("::ffff:127."));
}

export interface GuardOptions {
  /** Accepted bearer tokens; none: the API is open (loopback, or `SERVE_AUTH=none`). */
  readonly tokens?: readonly string[] | undefined;
  /** The listener is loopback: refuse requests naming another host (a page of another site rebinding its DNS). */
  readonly loopbackOnly?: boolean | undefined;
  /** Origins that may read answers from a page of theirs (`SERVE_CORS_ORIGINS`); none: no CORS headers at all. */
  readonly corsOrigins?: readonly string[] | undefined;
}

/**
 * The middleware: 421 for a foreign Host on a loopback listener; CORS headers only for a listed Origin (and its
 * preflight answered 204); 401 `{"error"}` for `/api/*` without an accepted `Authorization: Bearer` token.
 * `/healthz` and the dashboard's files stay open: they hold no data, and the page asks for the token itself.
 */
export function guard(opts: GuardOptions): MiddlewareHandler {
  const origins = new Set(opts.corsOrigins ?? []);
  const tokens = opts.tokens ?? [];
  return async (c, next) => {
    if (opts.loopbackOnly && !isLoopback(hostName(c.req.header("host") ?? "")))
      return c.json({ error: "this server answers only to a loopback host name or address" }, 421);
    const origin = c.req.header("origin");
    const cors = origin !== undefined && origins.has(origin);
    if (cors) {
      c.header("access-control-allow-origin", origin);
      c.header("vary", "Origin");
      if (c.req.method === "OPTIONS") {
        c.header("access-control-allow-methods", "GET, HEAD");
        c.header("access-control-allow-headers", "authorization, if-none-match");
        c.header("access-control-max-age", "600");
        return c.body(null, 204);
      }
      c.header("access-control-expose-headers", "etag");
    }
    const path = c.req.path;
    if (tokens.length > 0 && (path === "/api" || path.startsWith("/api/"))) {
      const auth = /^Bearer +(\S+) *$/i.exec(c.req.header("authorization") ?? "");
      if (auth?.[1] === undefined || !tokenAccepted(tokens, auth[1]))
        return c.json({ error: "a valid token is required: Authorization: Bearer <token>" }, 401, {
          "www-authenticate": 'Bearer realm="telemetry"',
        });
    }
    await next();
  };
}

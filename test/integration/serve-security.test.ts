/**
 * docs/contract.md, "Serve security", rule by rule against a real `telemetry serve` spawned from dist/ (npm run
 * build first): tokens, never open by accident, the Host check, CORS, HTTPS, bucket limits, HEAD, the export
 * bound, server timeouts and 500 answers. The abuses with memory figures are serve-security-abuse.test.ts.
 */
import { spawnSync } from "node:child_process";
import { once } from "node:events";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { connect } from "node:net";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTestCerts, type TestCerts } from "../helpers/certs.js";
import { type QueryDb, queryDb, reading } from "../helpers/query-db.js";
import { ask, type ServeProcess, serveRefusal, startServeProcess } from "../helpers/serve-process.js";

const TOKEN_A = "alpha-token-0123456789";
const TOKEN_B = "bravo-token-9876543210";
const MIN = 60_000;
const T0 = Date.UTC(2026, 0, 31, 9);
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe("serve security, against a real serve process", () => {
  let db: QueryDb;
  let certs: TestCerts;
  let tokenFile: string;
  const started: ServeProcess[] = [];
  const serve = async (env: Record<string, string>) => {
    const s = await startServeProcess({ DB_PATH: db.path, ...env });
    started.push(s);
    return s;
  };

  beforeAll(async () => {
    db = queryDb("serve-security-");
    await db.write([
      ...Array.from({ length: 3_000 }, (_, i) => reading("dev-a", "temperature", T0 + i * MIN, 20 + (i % 9))),
      reading("dev-b", "pressure", T0, 1_000),
    ]);
    certs = await makeTestCerts();
    tokenFile = join(certs.dir, "tokens");
    // Two tokens, one a line, as while rotating; a blank line and spaces are ignored.
    writeFileSync(tokenFile, `${TOKEN_A}\n\n  ${TOKEN_B}  \n`);
  });
  afterAll(async () => {
    await Promise.all(started.map((s) => s.stop()));
    await db?.dispose();
    certs?.remove();
  });

  it("asks every /api request for a token from SERVE_TOKEN_FILE, accepts each, leaves /healthz open, logs none", async () => {
    const s = await serve({ SERVE_TOKEN_FILE: tokenFile });
    for (const headers of [{}, bearer("wrong-token-0123456789"), { authorization: TOKEN_A }]) {
      const r = await ask(`${s.url}/api/latest`, { headers });
      expect(r.status).toBe(401);
      expect(JSON.parse(r.body)).toEqual({ error: expect.any(String) });
    }
    expect((await ask(`${s.url}/api/readings?device=dev-a&format=csv`)).status).toBe(401);
    expect((await ask(`${s.url}/api/nothing-here`)).status).toBe(401);
    for (const token of [TOKEN_A, TOKEN_B]) {
      const r = await ask(`${s.url}/api/latest`, { headers: bearer(token) });
      expect(r.status, r.body).toBe(200);
      expect(JSON.parse(r.body)).toHaveLength(2);
    }
    expect((await ask(`${s.url}/healthz`)).status).toBe(200);
    // The dashboard's page holds no data; it asks for the token itself.
    expect((await ask(`${s.url}/`)).status).toBe(200);
    expect(s.log()).not.toContain(TOKEN_A);
    expect(s.log()).not.toContain(TOKEN_B);
  });

  it("refuses to start beyond loopback without a token (exit 2, one line) unless SERVE_AUTH=none", async () => {
    const refused = await serveRefusal({ DB_PATH: db.path, HTTP_HOST: "0.0.0.0" });
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toMatch(/SERVE_TOKEN/);
    const short = await serveRefusal({ DB_PATH: db.path, SERVE_TOKEN: "short" });
    expect(short.code).toBe(2);
    expect(short.stderr).not.toContain("short");
    const open = await serve({ HTTP_HOST: "0.0.0.0", SERVE_AUTH: "none" });
    const port = new URL(open.url).port;
    expect((await ask(`http://127.0.0.1:${port}/api/devices`)).status).toBe(200);
    const guarded = await serve({ HTTP_HOST: "0.0.0.0", SERVE_TOKEN: TOKEN_A });
    const guardedPort = new URL(guarded.url).port;
    expect((await ask(`http://127.0.0.1:${guardedPort}/api/devices`)).status).toBe(401);
    expect(guarded.log()).toMatch(/without TLS/);
  });

  it("on a loopback listener refuses a Host that is not loopback (DNS rebinding), and sends CORS headers only for listed origins", async () => {
    const s = await serve({ SERVE_CORS_ORIGINS: "https://grafana.example:3000" });
    const port = new URL(s.url).port;
    const rebound = await ask(`${s.url}/api/latest`, { headers: { host: `evil.example:${port}` } });
    expect(rebound.status).toBe(421);
    expect(rebound.body).not.toContain("dev-a");
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]) {
      expect((await ask(`${s.url}/api/latest`, { headers: { host } })).status, host).toBe(200);
    }
    const listed = await ask(`${s.url}/api/latest`, { headers: { origin: "https://grafana.example:3000" } });
    expect(listed.headers["access-control-allow-origin"]).toBe("https://grafana.example:3000");
    const preflight = await ask(`${s.url}/api/latest`, {
      method: "OPTIONS",
      headers: { origin: "https://grafana.example:3000", "access-control-request-headers": "authorization" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers["access-control-allow-headers"]).toMatch(/authorization/);
    const other = await ask(`${s.url}/api/latest`, { headers: { origin: "https://evil.example" } });
    expect(other.headers["access-control-allow-origin"]).toBeUndefined();
    const plain = await serve({});
    const none = await ask(`${plain.url}/api/latest`, {
      headers: { origin: "https://grafana.example:3000" },
    });
    expect(Object.keys(none.headers).filter((h) => h.startsWith("access-control-"))).toEqual([]);
  });

  it("serves HTTPS with SERVE_TLS_CERT_FILE and SERVE_TLS_KEY_FILE (openssl-made certificates)", async () => {
    const s = await serve({
      SERVE_TLS_CERT_FILE: certs.serverCert,
      SERVE_TLS_KEY_FILE: certs.serverKey,
      SERVE_TOKEN: TOKEN_A,
    });
    expect(s.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const r = await ask(`${s.url}/api/devices`, {
      headers: bearer(TOKEN_A),
      ca: readFileSync(certs.ca, "utf8"),
    });
    expect(r.status, r.body).toBe(200);
    expect(JSON.parse(r.body)).toHaveLength(2);
    // Not trusted by the rogue authority's clients, and no plain HTTP on the same port.
    await expect(ask(`${s.url}/healthz`, { ca: readFileSync(certs.rogueCa, "utf8") })).rejects.toThrow();
    await expect(ask(`${s.url.replace("https:", "http:")}/healthz`)).rejects.toThrow();
    const half = await serveRefusal({ DB_PATH: db.path, SERVE_TLS_CERT_FILE: certs.serverCert });
    expect(half.code).toBe(2);
  });

  it("refuses a stats or series question of more buckets than SERVE_MAX_BUCKETS with 400 naming the limit", async () => {
    const s = await serve({ SERVE_MAX_BUCKETS: "1000" });
    const century = await ask(
      `${s.url}/api/stats?device=dev-a&sensor=temperature&every=1m&fill=null&from=-1400000w`,
    );
    expect(century.status).toBe(400);
    expect(JSON.parse(century.body).error).toMatch(/SERVE_MAX_BUCKETS/);
    expect(JSON.parse(century.body).error).toMatch(/1,000\b/);
    const day = await ask(`${s.url}/api/stats?device=dev-a&every=1h&from=${T0}&to=${T0 + 86_400_000}`);
    expect(day.status, day.body).toBe(200);
    const series = await ask(`${s.url}/api/series?device=dev-a&sensor=temperature&points=5000`);
    expect(series.status).toBe(400);
    expect(JSON.parse(series.body).error).toMatch(/SERVE_MAX_BUCKETS/);
    expect((await ask(`${s.url}/api/series?device=dev-a&sensor=temperature&points=500`)).status).toBe(200);
  });

  it("answers HEAD with the headers of GET and no body", async () => {
    const s = await serve({});
    const head = await ask(`${s.url}/api/readings?device=dev-a&format=csv`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers["content-type"]).toMatch(/text\/csv/);
    expect(head.body).toBe("");
    const get = await ask(`${s.url}/api/readings?device=dev-a&format=csv`);
    expect(get.headers.etag).toBe(head.headers.etag);
    expect(get.body.trim().split("\n")).toHaveLength(3_001);
  });

  it("streams at most SERVE_MAX_EXPORTS exports at once (429 beyond), and a slot frees when its client leaves", async () => {
    const s = await serve({ SERVE_MAX_EXPORTS: "1", SERVE_MAX_BUCKETS: "100000000" });
    // An export whose client stops reading holds its slot: ten years of empty minutes, far more than a socket holds.
    const held = request(`${s.url}/api/stats?device=dev-a&every=1m&fill=null&from=-520w`);
    held.end();
    const [res] = (await once(held, "response")) as [import("node:http").IncomingMessage];
    expect(res.statusCode).toBe(200);
    res.pause();
    const second = await ask(`${s.url}/api/readings?device=dev-a&format=ndjson`);
    expect(second.status).toBe(429);
    expect(JSON.parse(second.body).error).toMatch(/SERVE_MAX_EXPORTS/);
    // Kept answers are not exports.
    expect((await ask(`${s.url}/api/latest`)).status).toBe(200);
    held.destroy();
    await expect
      .poll(async () => (await ask(`${s.url}/api/readings?device=dev-a&format=ndjson`)).status)
      .toBe(200);
  });

  it("closes a connection that sends half its headers, or sits idle, after SERVE_IDLE_TIMEOUT", async () => {
    const s = await serve({ SERVE_IDLE_TIMEOUT: "2s" });
    const { port } = new URL(s.url);
    const slow = connect(Number(port), "127.0.0.1");
    await once(slow, "connect");
    slow.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    const idle = connect(Number(port), "127.0.0.1");
    await once(idle, "connect");
    slow.on("error", () => {});
    idle.on("error", () => {});
    await Promise.all([once(slow, "close"), once(idle, "close")]);
  });

  it("telemetry check warns about serve beyond loopback without TLS and an MQTT broker that takes anonymous clients; query stats has --max-buckets", () => {
    const cli = (args: string[], env: Record<string, string>) =>
      spawnSync(process.execPath, ["dist/cli/telemetry.js", ...args], {
        encoding: "utf8",
        env: { ...process.env, DB_PATH: db.path, ...env },
      });
    const check = cli(["check", "serve"], { HTTP_HOST: "0.0.0.0", SERVE_TOKEN: TOKEN_A });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toMatch(/^serve: warning: serve listens on 0\.0\.0\.0 without TLS/m);
    expect(check.stdout).not.toContain(TOKEN_A);
    const open = cli(["check", "serve"], { HTTP_HOST: "0.0.0.0" });
    expect(open.status).toBe(1);
    expect(open.stdout).toMatch(/SERVE_TOKEN/);
    // With credentials configured, --connect also tries without them: the shared test Mosquitto lets anyone in.
    const gateway = cli(["check", "gateway", "--connect"], {
      AMQP_URL: process.env.AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672",
      MQTT_URL: process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883",
      MQTT_USERNAME: "check-user",
      MQTT_PASSWORD: "check-password-0123",
    });
    expect(gateway.stdout, gateway.stderr).toMatch(
      /without credentials: ok, warning: the broker accepts anonymous clients/,
    );
    const century = cli(["query", "stats", "--device", "dev-a", "--every", "1m", "--from", "-1400000w"], {});
    expect(century.status).toBe(2);
    expect(century.stderr).toMatch(/limit of 100,000 \(--max-buckets\)/);
    const allowed = cli(
      [
        "query",
        "stats",
        "--device",
        "dev-a",
        "--every",
        "1h",
        "--from",
        "-5w",
        "--max-buckets",
        "1000",
        "--format",
        "json",
      ],
      {},
    );
    expect(allowed.status, allowed.stderr).toBe(0);
  });

  it("answers a failure with 500 {error: internal error, id}, the details only in its log under that id", async () => {
    const s = await serve({});
    const writer = new Database(db.path);
    try {
      writer.exec("ALTER TABLE readings RENAME TO readings_gone");
      const r = await ask(`${s.url}/api/readings?device=dev-a&format=csv`);
      expect(r.status).toBe(500);
      const body = JSON.parse(r.body) as { error: string; id: string };
      expect(Object.keys(body).sort()).toEqual(["error", "id"]);
      expect(body.error).toBe("internal error");
      expect(r.body).not.toContain(db.path);
      await expect.poll(() => s.log()).toContain(body.id);
      const line =
        s
          .log()
          .split("\n")
          .find((l) => l.includes(body.id)) ?? "";
      expect(line).toMatch(/readings/);
    } finally {
      writer.exec("ALTER TABLE readings_gone RENAME TO readings");
      writer.close();
    }
  });
});

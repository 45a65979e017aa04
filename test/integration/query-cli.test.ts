import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { reading } from "../helpers/query-db.js";
import { STORE_KINDS, type TestStore, testStore } from "../helpers/stores.js";

/** The built CLI: run `npm run build` first. */
const CLI = "dist/cli/telemetry.js";
const MIN = 60_000;
const T0 = Date.UTC(2026, 0, 31, 9);

function telemetry(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: "utf8",
    env: { ...process.env, DB_PATH: "" },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.each(STORE_KINDS)("telemetry query on %s", (kind) => {
  let db: TestStore;
  beforeAll(async () => {
    db = await testStore(kind, "query-cli");
    await db.write([
      ...Array.from({ length: 120 }, (_, i) => reading("dev-a", "temperature", T0 + i * MIN, 20 + (i % 7))),
      reading("dev-a", "humidity", T0 + 30 * MIN, 55),
    ]);
  });
  afterAll(async () => {
    await db?.dispose();
  });

  it("lists devices as json when stdout is not a terminal", () => {
    const r = telemetry("query", "devices", ...db.cliArgs);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([
      {
        device_id: "dev-a",
        last_seen: T0 + 119 * MIN + 5,
        interval_ms: MIN,
        silent: true,
        sensors: [
          {
            sensor: "humidity",
            unit: "%",
            first_ts: T0 + 30 * MIN,
            last_ts: T0 + 30 * MIN,
            last_value: 55,
            count: 1,
          },
          {
            sensor: "temperature",
            unit: "C",
            first_ts: T0,
            last_ts: T0 + 119 * MIN,
            last_value: 20,
            count: 120,
          },
        ],
      },
    ]);
  });

  it("gives the latest reading of each series as a table on request", () => {
    const r = telemetry("query", "latest", ...db.cliArgs, "--format", "table");
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")[0]).toMatch(
      /^device_id\s+sensor\s+ts\s+value\s+unit\s+seq\s+quality\s+tags$/,
    );
    expect(r.stdout).toContain(new Date(T0 + 119 * MIN).toISOString());
  });

  it("exports readings as csv, one row per reading after the header", () => {
    const r = telemetry(
      "query",
      "readings",
      "--device",
      "dev-a",
      "--sensor",
      "temperature",
      ...db.cliArgs,
      "--format",
      "csv",
    );
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe("device_id,sensor,ts,value,unit,seq,quality,tags");
    expect(lines).toHaveLength(121);
    expect(lines[1]).toBe(`dev-a,temperature,${T0},20,C,,good,{}`);
  });

  it("gives 15-minute stats with a range and gap filling as ndjson", () => {
    const r = telemetry(
      "query",
      "stats",
      "--device",
      "dev-a",
      "--sensor",
      "humidity",
      "--every",
      "15m",
      ...db.cliArgs,
      "--from",
      new Date(T0).toISOString(),
      "--to",
      String(T0 + 60 * MIN),
      "--fill",
      "null",
      "--format",
      "ndjson",
    );
    expect(r.code).toBe(0);
    const buckets = r.stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as { start: number; count: number });
    expect(buckets.map((b) => [(b.start - T0) / MIN, b.count])).toEqual([
      [0, 0],
      [15, 0],
      [30, 1],
      [45, 0],
    ]);
  });

  it("answers an unknown device with [] and exit code 0", () => {
    const r = telemetry("query", "readings", "--device", "nobody", ...db.cliArgs);
    expect(r).toMatchObject({ code: 0, stdout: "[]\n" });
  });

  it.each([
    [["readings", "--device", "dev-a", "--from", "yesterday"], /--from="yesterday": must be an ISO-8601/],
    [["stats", "--device", "dev-a", "--every", "7m"], /--every="7m"/],
    [["stats", "--device", "dev-a"], /--every is required/],
    [["readings"], /--device is required/],
    [["readings", "--device", "dev-a", "--format", "xml"], /--format="xml"/],
    [["readings", "--device", "dev-a", "--colour"], /colour/],
    [["latest", "--device", "dev-a", "--fill", "null"], /fill/],
  ])("refuses %j with one line and exit code 2", (args, error) => {
    const r = telemetry("query", ...args, ...db.cliArgs);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(error);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
  });

  it("says in one line that a database it cannot open cannot be opened", () => {
    const r = telemetry("query", "latest", ...db.missingArgs);
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd()).toMatch(/^telemetry query latest: cannot open .*\.missing/);
  });
});

describe.each(STORE_KINDS)("telemetry serve on %s", (kind) => {
  let db: TestStore;
  let child: ChildProcess | undefined;
  beforeAll(async () => {
    db = await testStore(kind, "serve-cli");
    await db.write([reading("dev-a", "temperature", T0, 21.5)]);
  });
  afterAll(async () => {
    child?.kill("SIGKILL");
    await db?.dispose();
  });

  it("serves the API on the port it logs and exits 0 on SIGTERM", async () => {
    const proc = spawn(process.execPath, [CLI, "serve", ...db.cliArgs, "--port", "0"], {
      env: { ...process.env, HTTP_HOST: "127.0.0.1", LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    let out = "";
    proc.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const url = await vi.waitFor(
      () => {
        const line = out.split("\n").find((l) => l.includes('"url"'));
        if (!line) throw new Error("not listening yet");
        return (JSON.parse(line) as { url: string }).url;
      },
      { timeout: 15_000, interval: 100 },
    );
    const latest = (await (await fetch(`${url}/api/latest`)).json()) as { value: number }[];
    expect(latest.map((r) => r.value)).toEqual([21.5]);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const exited = once(proc, "exit");
    proc.kill("SIGTERM");
    const [code] = await exited;
    expect(code).toBe(0);
  });
});

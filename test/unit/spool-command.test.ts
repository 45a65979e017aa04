import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../common/log.js";
import { runCli } from "../../scripts/spawn.js";
import { listSegments, SpoolStore } from "../../spool/store.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A spool of `count` one-reading records, the first `done` of them confirmed, closed as a stopped gateway leaves it. */
async function spoolWith(count: number, done: number): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "telemetry-spool-cli-"));
  dirs.push(dir);
  const store = SpoolStore.open({
    dir,
    maxBytes: 1_048_576,
    maxAgeMs: 86_400_000,
    full: "block",
    log: silentLogger(),
  });
  await Promise.all(
    Array.from(
      { length: count },
      (_, n) =>
        new Promise((resolve) =>
          store.append(
            [{ route: "readings", datum: Buffer.alloc(100, n), messageId: undefined, receivedAt: n }],
            resolve,
          ),
        ),
    ),
  );
  for (let seq = 0; seq < done; seq++) store.markDone(seq, 1);
  store.close();
  return dir;
}

describe("telemetry spool inspect|verify", () => {
  it("inspect shows the depth still to send: records, readings, bytes, the oldest, per segment", async () => {
    const dir = await spoolWith(2_000, 500);
    const { code, stdout } = await runCli(["spool", "inspect", dir, "--format", "json"]);
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as {
      depth: { records: number; readings: number; bytes: number };
      cursor: number;
      oldest: string;
      segments: unknown[];
    };
    expect(report.depth).toMatchObject({ records: 1_500, readings: 1_500 });
    expect(report.depth.bytes).toBeGreaterThan(1_500 * 100);
    expect(report.cursor).toBe(500);
    expect(Date.parse(report.oldest)).not.toBeNaN();
    expect(report.segments.length).toBeGreaterThan(1);
  });

  it("verify exits 0 on an intact spool and 1 naming the segment once a byte is flipped", async () => {
    const dir = await spoolWith(300, 0);
    const good = await runCli(["spool", "verify", dir]);
    expect(good.code).toBe(0);
    expect(good.stdout).toMatch(/^spool ok: 300 records/);
    const seg = listSegments(dir)[0]!.path;
    const bytes = readFileSync(seg);
    bytes[200]! ^= 0x01;
    writeFileSync(seg, bytes);
    const bad = await runCli(["spool", "verify"], { SPOOL_PATH: dir });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(seg);
    expect(bad.stderr).toMatch(/fails its CRC/);
  });

  it("inspect changes nothing: a torn tail is reported, still there afterwards for the gateway to cut", async () => {
    const dir = await spoolWith(10, 0);
    const seg = listSegments(dir).at(-1)!.path;
    writeFileSync(seg, Buffer.concat([readFileSync(seg), Buffer.from("torn")]));
    const before = readFileSync(seg);
    const { code } = await runCli(["spool", "inspect", dir]);
    expect(code).toBe(0);
    expect(readFileSync(seg).equals(before)).toBe(true);
    const verify = await runCli(["spool", "verify", dir]);
    expect(verify.code).toBe(1);
    expect(verify.stderr).toContain(
      `${seg}: byte ${before.length - 4}: torn record header at byte ${before.length - 4}`,
    );
  });

  it("a directory that is not there is a one-line error, exit 1", async () => {
    const { code, stderr } = await runCli(["spool", "inspect", "/nonexistent/spool"]);
    expect(code).toBe(1);
    expect(stderr.trim().split("\n")).toHaveLength(1);
  });
});

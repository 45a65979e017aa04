import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  cleanup,
  countRows,
  httpGet,
  type Service,
  startService,
  type TestNames,
  testNames,
  untilReady,
} from "../helpers/services.js";
import { expectNumbered, lockSqlite, publishNumbered, untilLockedOut } from "../helpers/store-faults.js";

/**
 * Publishes `count` readings of one device at QoS 1 in paced chunks (a broker with Mosquitto's default
 * `max_queued_messages 1000` drops a burst larger than the gateway's window plus that queue) and resolves when
 * the broker acknowledged them all.
 */
describe("the processor does not ack what it could not store", () => {
  let names: TestNames | undefined;
  const services: Service[] = [];

  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.stop("SIGKILL")));
    if (names) await cleanup(names);
    names = undefined;
  });

  it("an analyst holding a write transaction: the processor retries, reports not ready, then stores everything once", async () => {
    names = testNames("sqlitelock");
    const env = { ...names.env, BATCH_SIZE: "50", BATCH_DELAY: "20ms", GATEWAY_INFLIGHT: "5000" };
    services.push(await startService("processor", env), await startService("gateway", env));
    const processor = services[0]!;
    await untilReady(...services);
    await publishNumbered(names, 0, 100);
    await vi.waitFor(() => expect(countRows(names!.dbPath)).toBe(100), { timeout: 15_000 });

    const unlock = lockSqlite(names.dbPath);
    await publishNumbered(names, 100, 200);
    await untilLockedOut(processor.httpPort, 10_000);
    const metrics = (await httpGet(processor.httpPort, "/metrics")).body;
    expect(Number(/^telemetry_processor_store_errors_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    expect(processor.logs.some((l) => String(l.msg).startsWith("could not commit batch to SQLite"))).toBe(
      true,
    );
    expect(countRows(names.dbPath)).toBe(100);

    unlock();
    await vi.waitFor(() => expect(countRows(names!.dbPath)).toBe(300), { timeout: 15_000 });
    expectNumbered(names.dbPath, 300);
    await vi.waitFor(async () => expect((await httpGet(processor.httpPort, "/readyz")).status).toBe(200), {
      timeout: 10_000,
    });
  });

  it("a full disk: nothing is acked while SQLite cannot write, and it resumes once there is space", async () => {
    names = testNames("diskfull");
    const mount = join(names.dir, "small-disk");
    mkdirSync(mount);
    // A tmpfs just big enough for the empty database (its tables, the rollup tiers among them, and the WAL): it
    // fills after a few hundred rows.
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=160k", "tmpfs", mount]);
    try {
      const dbPath = join(mount, "telemetry.db");
      const env = {
        ...names.env,
        DB_PATH: dbPath,
        BATCH_SIZE: "100",
        BATCH_DELAY: "20ms",
        GATEWAY_INFLIGHT: "5000",
      };
      services.push(await startService("processor", env), await startService("gateway", env));
      const processor = services[0]!;
      await untilReady(...services);
      await publishNumbered(names, 0, 3_000);
      await vi.waitFor(
        async () =>
          expect((await httpGet(processor.httpPort, "/readyz")).body).toMatch(/database or disk is full/),
        { timeout: 15_000 },
      );
      const storedWhileFull = countRows(dbPath);
      expect(storedWhileFull).toBeLessThan(3_000);

      execFileSync("mount", ["-o", "remount,size=64m", mount]);
      await vi.waitFor(() => expect(countRows(dbPath)).toBe(3_000), { timeout: 30_000 });
      expectNumbered(dbPath, 3_000);
      await vi.waitFor(async () => expect((await httpGet(processor.httpPort, "/readyz")).status).toBe(200), {
        timeout: 10_000,
      });
      await Promise.all(services.splice(0).map((s) => s.stop("SIGTERM")));
    } finally {
      execFileSync("umount", ["-l", mount]);
    }
  });
});

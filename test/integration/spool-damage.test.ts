/**
 * Flipped bytes in an older spool segment, end to end: a gateway spools 10,000 readings while the uplink is down and
 * stops; one byte is flipped in the first, a middle and the last record of an older segment; `telemetry spool
 * verify` names each; the gateway restarted with the uplink drains the rest: 10,000 minus the three hit readings
 * are stored, and `telemetry_gateway_spool_dropped_total{reason="corrupt"}` is exactly the loss.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RECORD_HEADER_BYTES } from "../../spool/format.js";
import { listSegments } from "../../spool/store.js";
import { faultNames, metric, report, startStream, until } from "../helpers/fault-stream.js";
import { freePort, type PrivateMosquitto, startPrivateMosquitto } from "../helpers/private-brokers.js";
import {
  cleanup,
  countRows,
  httpGet,
  runCli,
  type Service,
  startService,
  type TestNames,
  untilReady,
} from "../helpers/services.js";
import { recordOffsets } from "../helpers/spool-files.js";

const READINGS = 10_000;
const RATE = 3_000;
/** 256 KiB segments: 10,000 readings fill several. */
const SPOOL_MAX_BYTES = "4MiB";
const STORED_TIMEOUT_MS = 90_000;

describe("spool: flipped bytes in an older segment", () => {
  let mosquitto: PrivateMosquitto;
  let names: TestNames;
  const services: Service[] = [];

  beforeAll(async () => {
    mosquitto = await startPrivateMosquitto({ maxQueued: 0 });
    names = faultNames("spool-damage", { mqttUrl: mosquitto.url });
  });

  afterAll(async () => {
    await Promise.all(services.map((s) => s.stop("SIGKILL")));
    await cleanup(names).catch(() => undefined);
    await mosquitto?.stop();
  });

  it("cost the three hit readings only: verify names them, the drain skips them counted as corrupt, and the other 9,997 are stored", async () => {
    const spool = join(names.dir, "spool");
    const env = (amqpUrl: string) => ({
      ...names.env,
      AMQP_URL: amqpUrl,
      SPOOL_PATH: spool,
      SPOOL_MAX_BYTES,
      DRAIN_TIMEOUT: "1s",
    });
    const down = `amqp://guest:guest@127.0.0.1:${await freePort()}`;
    const first = await startService("gateway", env(down));
    services.push(first);
    await untilReady(first);
    const stream = startStream(names, { count: READINGS, rate: RATE, seed: 3_201 });
    expect((await stream.done).acked).toBe(READINGS);
    await until("every reading spooled", 60_000, async () => {
      return (await metric(first.httpPort, "telemetry_gateway_spool_depth_readings")) === READINGS;
    });
    expect(await first.stop("SIGTERM")).toBe(0);

    const segments = listSegments(spool);
    expect(segments.length).toBeGreaterThan(3);
    const older = segments[1]!;
    const offsets = recordOffsets(older.path);
    const hit = [0, Math.floor(offsets.length / 2), offsets.length - 1];
    const bytes = readFileSync(older.path);
    for (const i of hit) bytes[offsets[i]! + RECORD_HEADER_BYTES + 5]! ^= 0x10;
    writeFileSync(older.path, bytes);

    const verify = await runCli(["spool", "verify", spool]);
    expect(verify.code).toBe(1);
    const lines = verify.stderr.trim().split("\n");
    for (const i of hit) {
      const seq = older.first + i;
      expect(lines).toContain(
        `${older.path}: byte ${offsets[i]}: records ${seq}..${seq} damaged (record ${seq} at byte ${offsets[i]} fails its CRC); 1 readings lost`,
      );
    }
    expect(lines.at(-1)).toMatch(/^spool damaged: 1 of \d+ segments; 3 records, 3 readings lost/);

    const second = await startService("gateway", env(names.amqpUrl));
    services.push(second);
    services.push(await startService("processor", names.env));
    await until("the spool drained", STORED_TIMEOUT_MS, async () => {
      return (await metric(second.httpPort, "telemetry_gateway_spool_depth_readings")) === 0;
    });
    await until(
      "9,997 readings stored",
      STORED_TIMEOUT_MS,
      async () => countRows(names.dbPath) === READINGS - 3,
    );
    const corrupt = (await httpGet(second.httpPort, "/metrics")).body
      .split("\n")
      .find((l) => l.startsWith('telemetry_gateway_spool_dropped_total{reason="corrupt"} '));
    expect(corrupt).toBe('telemetry_gateway_spool_dropped_total{reason="corrupt"} 3');
    const logged = second.logs.filter((l) => String(l.msg).startsWith("spool records damaged; dropped"));
    expect(logged.map((l) => [l.segment, l.offset, l.readings])).toEqual(
      hit.map((i) => [older.path, offsets[i], 1]),
    );
    report("spool: flipped bytes in an older segment", {
      spooled: READINGS,
      stored: countRows(names.dbPath),
      corrupt: 3,
    });
  }, 240_000);
});

/**
 * `npm run bench:steps`: CPU time per reading of each step of the hot path, in this process, one step at a time:
 * the gateway's MQTT packet parse -> JSON parse and validation -> Avro datum -> batch framing, and the processor's
 * batch decode -> rules check -> SQLite insert and commit. Each step runs on the previous step's real output,
 * warmed up first, best of several rounds (the machine is shared: the minimum is the least disturbed).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqttPacket from "mqtt-packet";
import { parsePayload } from "../gateway/validate.js";
import { type Reading, readingProblem, SchemaRegistry } from "../schemas/index.js";
import { SqliteStore } from "../store/sqlite.js";

const READINGS = 20_000;
const ROUNDS = 7;
const BATCH = 500;
const TS0 = Date.UTC(2026, 0, 1);
const PREFIX = "sensors";

/** Best-of-`ROUNDS` µs per item of `run`, which handles `items` items per call. */
function time(items: number, run: () => void): number {
  run(); // warm-up: JIT, caches
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < ROUNDS; i++) {
    const started = process.cpuUsage();
    run();
    const used = process.cpuUsage(started);
    best = Math.min(best, used.user + used.system);
  }
  return best / items;
}

function main(): void {
  const schemas = SchemaRegistry.load();
  const topics = Array.from({ length: READINGS }, (_, i) => `${PREFIX}/dev-${i % 100}/s${i % 3}`);
  const payloads = topics.map((_, i) =>
    Buffer.from(JSON.stringify({ value: 20 + (i % 100) / 10, ts: TS0 + i * 1_000, unit: "C", seq: i })),
  );
  const packets = payloads.map((payload, i) => {
    const packet = {
      topic: topics[i]!,
      payload,
      qos: 1,
      messageId: (i % 65_535) + 1,
      dup: false,
      retain: false,
    } as const;
    return mqttPacket.generate({ cmd: "publish", ...packet }, { protocolVersion: 5 });
  });
  const wire = Buffer.concat(packets);

  const rows: [string, number][] = [];
  const step = (name: string, us: number) => rows.push([name, us]);

  let parsed = 0;
  step(
    "gateway: MQTT PUBLISH packet parse (mqtt-packet)",
    time(READINGS, () => {
      const parser = mqttPacket.parser({ protocolVersion: 5 });
      parser.on("packet", () => {
        parsed++;
      });
      parser.parse(wire);
    }),
  );
  let readings: Reading[] = [];
  step(
    "gateway: JSON parse + validation (parsePayload)",
    time(READINGS, () => {
      readings = [];
      for (let i = 0; i < READINGS; i++) {
        const r = parsePayload(topics[i]!, payloads[i]!, {
          topicPrefix: PREFIX,
          gatewayId: "gw",
          receivedAt: TS0,
        });
        if (r.ok) readings.push(...r.readings);
      }
    }),
  );
  let datums: Buffer[] = [];
  step(
    "gateway: Avro datum (encodeDatum)",
    time(READINGS, () => {
      datums = readings.map((r) => schemas.encodeDatum(r));
    }),
  );
  let bodies: Buffer[] = [];
  step(
    `gateway: batch framing (${BATCH} readings per message)`,
    time(READINGS, () => {
      bodies = [];
      for (let i = 0; i < datums.length; i += BATCH) {
        const part = datums.slice(i, i + BATCH);
        bodies.push(
          schemas.frameBatch(
            part,
            part.reduce((n, d) => n + d.length, 0),
          ),
        );
      }
    }),
  );
  let decoded: Reading[] = [];
  step(
    "processor: batch decode (decodeMessage)",
    time(READINGS, () => {
      decoded = [];
      for (const b of bodies) decoded.push(...schemas.decodeMessage(b).readings);
    }),
  );
  step(
    "processor: contract rules (readingProblem)",
    time(READINGS, () => {
      for (const r of decoded) readingProblem(r);
    }),
  );
  const dir = mkdtempSync(join(tmpdir(), "bench-steps-"));
  try {
    let round = 0;
    step(
      `processor: SQLite insert + commit, ${BATCH} per transaction (synchronous=FULL)`,
      time(READINGS, () => {
        // A new database each round, so every insert is new (duplicates take another, cheaper path).
        const store = new SqliteStore(join(dir, `steps-${round++}.db`));
        for (let i = 0; i < decoded.length; i += BATCH) store.writeBatch(decoded.slice(i, i + BATCH));
        store.close();
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (parsed === 0 || decoded.length !== READINGS)
    throw new Error("a step produced nothing: the figures are void");

  const sum = (side: string) =>
    rows.filter(([n]) => n.startsWith(side)).reduce((total, [, us]) => total + us, 0);
  rows.push(["gateway steps in all", sum("gateway")], ["processor steps in all", sum("processor")]);
  const width = Math.max(...rows.map(([n]) => n.length));
  process.stdout.write(
    `CPU µs per reading of each hot-path step, in one process, best of ${ROUNDS} rounds of ${READINGS.toLocaleString("en-US")}\n`,
  );
  for (const [name, us] of rows)
    process.stdout.write(`  ${name.padEnd(width)}  ${us.toFixed(2).padStart(7)}\n`);
}

main();

import { describe, expect, it } from "vitest";
import { DEVICE_COLUMNS } from "../../query/answers.js";
import { devicesText } from "../../query/devices-text.js";
import { type Answer, render } from "../../query/format.js";
import { mulberry32 as prng } from "../../simulators/model.js";
import { type DevicesPage, devicesOfPage, type ReadingKind } from "../../store/queries.js";

async function text(answer: Answer, format: "json" | "ndjson" | "csv"): Promise<string> {
  let out = "";
  for await (const chunk of render(answer, format)) out += chunk;
  return out;
}

/** The object path: what `devices` printed before it had columns, and still prints from other stores. */
const byRows = (page: DevicesPage, format: "json" | "ndjson" | "csv") => {
  const devices = devicesOfPage(page);
  return text(
    {
      rows: devices,
      flat: devices.flatMap((d) => d.sensors.map((s) => ({ device_id: d.device_id, ...s }))),
      columns: DEVICE_COLUMNS,
    },
    format,
  );
};

const kind = (device_id: string, sensor: string, unit: string | null): ReadingKind => ({
  device_id,
  sensor,
  unit,
  quality: "good",
  tags: "{}",
});

describe("devices written from its columns", () => {
  const kinds = [
    kind("dev-0001", "co2", "ppm"),
    kind("dev-0001", "humidity", null),
    kind("dev-0001", "t,1", 'in "q"'),
    kind("dev-0002", "temperature", "\u00b0C"),
    kind("greenhouse-7", "a", "line\nbreak"),
    kind("greenhouse-7", "b", "C"),
  ];
  const values = [21.37, 0.1 + 0.2, -273.15, 1e21, -0, 55];
  const page: DevicesPage = {
    length: kinds.length,
    kinds,
    first_ts: kinds.map((_, i) => 1_764_547_200_000 + i),
    last_ts: kinds.map((_, i) => 1_767_139_200_000 + i * 1_000),
    last_value: kinds.map((_, i) => values[i] as number),
    count: kinds.map((_, i) => [1, 2_500, 10_000_000, 7, 123_456_789_012, 3][i] as number),
  };

  it("prints byte for byte what the rows print, in json, ndjson and csv, again from the kept text", async () => {
    for (let round = 0; round < 2; round++) {
      for (const format of ["json", "ndjson", "csv"] as const) {
        expect(devicesText(page, format, DEVICE_COLUMNS.join(",")), `${format}, round ${round}`).toBe(
          await byRows(page, format),
        );
      }
    }
  });

  it("one device, one series, and none at all", async () => {
    const one: DevicesPage = {
      length: 1,
      kinds: [kind("d", "s", "C")],
      first_ts: [1],
      last_ts: [2],
      last_value: [3.5],
      count: [2],
    };
    const none: DevicesPage = { length: 0, kinds: [], first_ts: [], last_ts: [], last_value: [], count: [] };
    for (const p of [one, none]) {
      for (const format of ["json", "ndjson", "csv"] as const) {
        expect(devicesText(p, format, DEVICE_COLUMNS.join(",")), format).toBe(await byRows(p, format));
      }
    }
  });

  it("reads back as the devices it holds", () => {
    expect(JSON.parse(devicesText(page, "json", ""))).toEqual(
      JSON.parse(JSON.stringify(devicesOfPage(page))),
    );
  });

  it("the same series asked for again print what they print fresh, as their numbers change", async () => {
    const random = prng(5);
    const numbers = [0, -0, 1, 21.37, 0.1 + 0.2, 1e21, 5e-324, 1_767_139_200_000, 123_456_789_012];
    const pick = () => numbers[Math.floor(random() * numbers.length)] as number;
    const columns = (): DevicesPage => ({
      length: kinds.length,
      kinds,
      first_ts: kinds.map(pick),
      last_ts: kinds.map(pick),
      last_value: kinds.map(pick),
      count: kinds.map(pick),
    });
    let now = columns();
    for (let round = 0; round < 60; round++) {
      for (const format of ["json", "ndjson", "csv"] as const) {
        const again = devicesText(now, format, DEVICE_COLUMNS.join(","));
        expect(again, `${format}, round ${round}`).toBe(
          devicesText({ ...now, kinds: kinds.slice() }, format, DEVICE_COLUMNS.join(",")),
        );
        if (round % 20 === 0)
          expect(again, `${format}, round ${round}, rows`).toBe(await byRows(now, format));
      }
      // A few numbers change, as between two questions while readings arrive.
      const next = columns();
      const keep = (a: readonly number[], b: readonly number[]) =>
        a.map((v, i) => (random() < 0.15 ? b[i] : v) as number);
      now = {
        ...now,
        first_ts: keep(now.first_ts, next.first_ts),
        last_ts: keep(now.last_ts, next.last_ts),
        last_value: keep(now.last_value, next.last_value),
        count: keep(now.count, next.count),
      };
    }
  });
});

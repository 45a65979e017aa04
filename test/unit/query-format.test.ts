import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { type Answer, type Format, render, writeTo } from "../../query/format.js";
import type { Quality } from "../../schemas/index.js";
import { mulberry32 as prng } from "../../simulators/model.js";
import {
  pageOfRows,
  type ReadingKind,
  type ReadingPage,
  readingOfRow,
  rowOfReading,
  rowsOfPage,
} from "../../store/queries.js";

async function text(answer: Answer, format: Format): Promise<string> {
  let out = "";
  for await (const chunk of render(answer, format)) out += chunk;
  return out;
}

const rows = [
  { device_id: "d1", sensor: "t", ts: Date.UTC(2026, 0, 31, 12), value: 20.5, unit: "C", tags: {} },
  {
    device_id: "d1",
    sensor: "t",
    ts: Date.UTC(2026, 0, 31, 13),
    value: -1,
    unit: null,
    tags: { site: 'a,"b"' },
  },
];
const answer: Answer = { rows, columns: ["device_id", "sensor", "ts", "value", "unit", "tags"] };
const empty: Answer = { rows: [], columns: ["device_id"] };

describe("output formats", () => {
  it("json is an array of the rows as they are", async () => {
    expect(JSON.parse(await text(answer, "json"))).toEqual(rows);
    expect(await text(empty, "json")).toBe("[]\n");
  });

  it("ndjson is one object a line", async () => {
    const lines = (await text(answer, "ndjson")).trimEnd().split("\n");
    expect(lines.map((l) => JSON.parse(l))).toEqual(rows);
    expect(await text(empty, "ndjson")).toBe("");
  });

  it("csv has a header row, empty cells for null, tags as JSON, and quotes what needs it", async () => {
    expect(await text(answer, "csv")).toBe(
      "device_id,sensor,ts,value,unit,tags\n" +
        "d1,t,1769860800000,20.5,C,{}\n" +
        'd1,t,1769864400000,-1,,"{""site"":""a,\\""b\\""""}"\n',
    );
    expect(await text(empty, "csv")).toBe("device_id\n");
  });

  it("a table aligns columns and shows times as ISO-8601", async () => {
    const lines = (await text(answer, "table")).trimEnd().split("\n");
    expect(lines[0]).toMatch(/^device_id {2}sensor {2}ts {24}value {2}unit {2}tags$/);
    expect(lines[1]).toContain("2026-01-31T12:00:00.000Z  20.5");
    expect(lines[2]?.indexOf("-1")).toBe(lines[0]?.indexOf("value"));
    expect(await text(empty, "table")).toBe("(no rows)\n");
  });

  it("csv and table print the flat rows when an answer has them", async () => {
    const nested: Answer = {
      rows: [{ device_id: "d1", sensors: [{ sensor: "a" }, { sensor: "b" }] }],
      flat: [
        { device_id: "d1", sensor: "a" },
        { device_id: "d1", sensor: "b" },
      ],
      columns: ["device_id", "sensor"],
    };
    expect(await text(nested, "csv")).toBe("device_id,sensor\nd1,a\nd1,b\n");
    expect(JSON.parse(await text(nested, "json"))[0].sensors).toHaveLength(2);
  });

  it("streams: the first chunk comes before the rows run out", async () => {
    let produced = 0;
    async function* endless() {
      for (;;) {
        produced++;
        yield { device_id: "d".repeat(100) };
      }
    }
    const chunks = render({ rows: endless(), columns: ["device_id"] }, "csv");
    const first = await chunks.next();
    await chunks.return(undefined);
    expect(first.value?.length).toBeGreaterThan(0);
    expect(produced).toBeLessThan(2_000);
  });

  it("writing stops without an error when the reader goes away", async () => {
    const out = new PassThrough({ highWaterMark: 16 });
    async function* many() {
      for (let i = 0; i < 10_000; i++) yield "x".repeat(1_000);
    }
    out.once("data", () => out.destroy(Object.assign(new Error("write EPIPE"), { code: "EPIPE" })));
    await expect(writeTo(many(), out)).resolves.toBe(false);
  });

  it("an answer in pages prints byte for byte as its rows do, in every format but table", async () => {
    const columns = ["device_id", "sensor", "ts", "value", "unit", "seq", "quality", "tags"];
    const tricky = [
      { device_id: "d1", sensor: "t", ts: 1, value: 20.5, unit: "C", seq: 0, quality: "good", tags: {} },
      { device_id: "d1", sensor: "t", ts: 2, value: -0, unit: null, seq: null, quality: "bad", tags: {} },
      {
        device_id: "d1",
        sensor: "h,1",
        ts: 3,
        value: 1e-7,
        unit: 'in "q"',
        seq: 2 ** 40,
        quality: "uncertain",
        tags: { site: 'a,"b"\nc', "k\u00e9": "\u2603" },
      },
      { device_id: 'd"2', sensor: "t", ts: 4, value: 1e21, unit: "C", seq: 3, quality: "good", tags: {} },
      { device_id: 'd"2', sensor: "t", ts: 5, value: 3, unit: "C", seq: 4, quality: "good", tags: { a: "" } },
    ];
    const page = (rs: typeof tricky) =>
      pageOfRows(
        rs.map((r) =>
          rowOfReading({ ...r, quality: r.quality as Quality, tags: r.tags as Record<string, string> }),
        ),
      );
    async function* pages(rs: typeof tricky) {
      yield page(rs.slice(0, 2));
      yield page([]);
      yield page(rs.slice(2));
    }
    for (const format of ["csv", "ndjson", "json"] as const) {
      for (const rs of [tricky, []]) {
        const byRows = await text({ rows: rs, columns }, format);
        const byPages = await text({ rows: [], pages: pages(rs), columns }, format);
        expect(byPages, `${format}, ${rs.length} rows`).toBe(byRows);
      }
    }
    // The object path is the reference: check it once against what JSON and csv mean.
    expect(
      (await text({ rows: tricky, columns }, "ndjson"))
        .split("\n")
        .slice(0, -1)
        .map((l) => JSON.parse(l)),
    ).toEqual(tricky.map((r) => ({ ...r, value: Object.is(r.value, -0) ? 0 : r.value })));
  });

  it("a page in columns prints as its rows do: kinds changing row by row, a unit changing mid-page, long pages", async () => {
    const columns = ["device_id", "sensor", "ts", "value", "unit", "seq", "quality", "tags"];
    const kinds: ReadingKind[] = [
      { device_id: "dev-1", sensor: "co2", unit: "ppm", quality: "good", tags: "{}" },
      {
        device_id: "dev-1",
        sensor: "t,1",
        unit: null,
        quality: "uncertain",
        tags: '{"site":"a,\\"b\\"\\nc"}',
      },
      { device_id: "dev-1", sensor: "t,1", unit: "C", quality: "bad", tags: '{"k\u00e9":"\u2603"}' },
      // Long enough that a page of them outgrows the buffer a page is first written into.
      {
        device_id: 'd"2',
        sensor: "h",
        unit: 'in "q"',
        quality: "good",
        tags: JSON.stringify({ x: "y".repeat(9_000) }),
      },
      { device_id: "dev-1", sensor: "unused", unit: "C", quality: "good", tags: "{}" },
    ];
    const values = [
      20.5,
      -0,
      0.1 + 0.2,
      1e-7,
      -1e21,
      776.76,
      -273.15,
      3,
      1.005,
      123_456.7,
      5e-324,
      21_474_836.48,
    ];
    const seqs = [0, null, 7, 2 ** 40, -3, null];
    /** A page of `n` rows from `at` whose kind is `kindOf(i)`; `kind` left out when every row is of kinds[0]. */
    const columnsPage = (
      at: number,
      n: number,
      kindOf: (i: number) => number,
      only = false,
    ): ReadingPage => ({
      length: n,
      ts: Array.from({ length: n }, (_, i) => 1_793_499_840_784 + (at + i) * 1_000 * (i % 3 === 0 ? -1 : 1)),
      value: Array.from({ length: n }, (_, i) => values[(at + i) % values.length] as number),
      seq: Array.from({ length: n }, (_, i) => seqs[(at + i) % seqs.length] ?? null),
      kinds: only ? kinds.slice(0, 1) : kinds,
      kind: only ? undefined : Array.from({ length: n }, (_, i) => kindOf(at + i)),
    });
    const pages = [
      columnsPage(0, 40, () => 0, true),
      // Merged sensors: the kind changes every row.
      columnsPage(40, 300, (i) => i % 3),
      // A unit (and quality and tags) changing mid-page.
      columnsPage(340, 100, (i) => (i < 390 ? 1 : 2)),
      columnsPage(440, 60, (i) => (i % 2 === 0 ? 3 : 0)),
    ];
    const readings = pages.flatMap(rowsOfPage).map(readingOfRow);
    for (const format of ["csv", "ndjson", "json"] as const) {
      const byRows = await text({ rows: readings, columns }, format);
      const byPages = await text({ rows: [], pages, columns }, format);
      expect(byPages, format).toBe(byRows);
    }
    // The same pages built from the rows (pageOfRows, as PostgreSQL and latest build them) print alike too.
    const rebuilt = pages.map((p) => pageOfRows(rowsOfPage(p)));
    expect(rebuilt.map((p) => p.kinds.length)).toEqual([1, 3, 2, 2]);
    expect(await text({ rows: [], pages: rebuilt, columns }, "csv")).toBe(
      await text({ rows: readings, columns }, "csv"),
    );
  });

  it("an export's numbers print as String and JSON.stringify print them, whatever their size, sign and decimals", async () => {
    const columns = ["device_id", "sensor", "ts", "value", "unit", "seq", "quality", "tags"];
    const random = prng(30);
    const n = 20_000;
    // Epoch ms of every era and beyond, and values of 0 to 6 decimals from tiny to huge, both signs.
    const numberOf = (i: number) => {
      const magnitude = 10 ** Math.floor(random() * 24 - 8);
      const v = (random() - 0.5) * magnitude;
      const decimals = Math.floor(random() * 7);
      return i % 5 === 0 ? v : Math.round(v * 10 ** decimals) / 10 ** decimals;
    };
    const special = [
      0,
      -0,
      1e9,
      1e9 - 1,
      -1e9,
      2 ** 53 - 1,
      2 ** 53,
      1e21,
      0.1 + 0.2,
      21.3,
      21.05,
      -0.07,
      1e-7,
    ];
    const page: ReadingPage = {
      length: n,
      ts: Array.from(
        { length: n },
        (_, i) => special[i] ?? (i % 2 ? Math.floor(random() * 4e12) - 1e12 : numberOf(i)),
      ),
      value: Array.from({ length: n }, (_, i) => special[i] ?? numberOf(i)),
      seq: Array.from({ length: n }, (_, i) =>
        i % 7 === 0 ? null : (special[i] ?? Math.round(numberOf(i))),
      ),
      kinds: [{ device_id: "d", sensor: "s", unit: "C", quality: "good", tags: "{}" }],
      kind: undefined,
    };
    const readings = rowsOfPage(page).map(readingOfRow);
    for (const format of ["csv", "ndjson", "json"] as const) {
      expect(await text({ rows: [], pages: [page], columns }, format), format).toBe(
        await text({ rows: readings, columns }, format),
      );
    }
  });
});

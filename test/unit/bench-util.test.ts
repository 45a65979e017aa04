import { describe, expect, it } from "vitest";
import { histogramBound, histogramMean, parseMetrics, total } from "../../bench/metrics.js";
import { parseOptions } from "../../bench/options.js";
import {
  markdownTable,
  median,
  percentiles,
  readingsOfKey,
  steadyRate,
  timeline,
  until,
} from "../../bench/util.js";

describe("the benchmark's figures from raw samples", () => {
  it("percentiles are nearest-rank, and zero for no sample", () => {
    const p = percentiles(Float64Array.from({ length: 100 }, (_, i) => 100 - i));
    expect(p).toEqual({ n: 100, p50: 50, p95: 95, p99: 99, max: 100 });
    expect(percentiles(new Float64Array(0))).toEqual({ n: 0, p50: 0, p95: 0, p99: 0, max: 0 });
  });

  it("the steady rate leaves out the first 10% and the last 5% of the commit span", () => {
    // One row a millisecond for 10 s, and a burst in the first second that the window must leave out.
    const commits = Array.from({ length: 10_000 }, (_, t) => ({ t, n: t < 500 ? 100 : 1 }));
    const r = steadyRate(commits, 0, 10_000);
    expect(r.from).toBe(1_000);
    expect(r.to).toBe(9_500);
    expect(r.perSecond).toBe(1_000);
  });

  it("a timeline counts the rows committed in each second from the first commit", () => {
    expect(
      timeline([
        { t: 5_000, n: 2 },
        { t: 5_999, n: 3 },
        { t: 7_000, n: 4 },
      ]).perSecond,
    ).toEqual([5, 0, 4]);
  });

  it("readings split round robin over keys, the first keys getting the remainder", () => {
    expect([0, 1, 2].map((j) => readingsOfKey(10, 3, j))).toEqual([4, 3, 3]);
  });

  it("the median of an even count is the mean of the middle two", () => {
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBe(0);
  });

  it("a markdown table right-aligns the columns marked with >", () => {
    expect(markdownTable(["a", ">b"], [["x", "1"]])).toEqual(["| a | b |", "| --- | ---: |", "| x | 1 |"]);
  });

  it("metrics sum over labels, and a histogram gives its mean and the bucket bound of a quantile", () => {
    const m = parseMetrics(
      [
        "# HELP x",
        'c_total{reason="a"} 2',
        'c_total{reason="b"} 3',
        'h_bucket{le="0.1"} 90',
        'h_bucket{le="1"} 99',
        'h_bucket{le="+Inf"} 100',
        "h_sum 20",
        "h_count 100",
      ].join("\n"),
    );
    expect(total(m, "c_total")).toBe(5);
    expect(histogramMean(m, "h")).toBe(0.2);
    expect(histogramBound(m, "h", 0.99)).toBe(1);
    expect(histogramBound(m, "h", 0.999)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe("waiting in the benchmark", () => {
  it("gives up when what should move has not moved for the stall time", async () => {
    await expect(until("stuck", () => false, { pollMs: 5, stallMs: 50, progress: () => 7 })).rejects.toThrow(
      /stuck: no progress for 0.05 s \(at 7\)/,
    );
  });

  it("keeps waiting while progress moves, and returns once the check holds", async () => {
    let n = 0;
    await until("moving", () => ++n >= 30, { pollMs: 5, stallMs: 50, progress: () => n });
    expect(n).toBe(30);
  });
});

describe("the benchmark's flags", () => {
  it("--short shrinks the counts, and a full run sizes the throughput run itself", () => {
    expect(parseOptions(["--short"], {})).toMatchObject({ short: true, total: 20_000, rawCount: 10_000 });
    expect(parseOptions([], {})).toMatchObject({ short: false, total: undefined, rawCount: 100_000 });
  });

  it("a bad value names its flag", () => {
    expect(() => parseOptions(["--devices", "5"], {})).toThrow(
      /--devices: must be an integer from 10 to 10000/,
    );
    expect(() => parseOptions(["--set", "lower=1"], {})).toThrow(/--set: expected KEY=VALUE/);
  });

  it("--skip-payload-rss and --set reach the options, and --help gives none", () => {
    const o = parseOptions(["--skip-payload-rss", "--set", "GATEWAY_INFLIGHT_BYTES=1000000"], {});
    expect(o).toMatchObject({ skipPayloadRss: true, serviceEnv: { GATEWAY_INFLIGHT_BYTES: "1000000" } });
    expect(parseOptions(["--help"], {})).toBeUndefined();
  });
});

import { describe, expect, it } from "vitest";
import { bucketProblem, statsBuckets } from "../../query/params.js";
import { hostName, isLoopback, parseTokens, tokenAccepted } from "../../serve/guard.js";

describe("serve's guard", () => {
  it("reads one token a line, and refuses none or a short one without quoting it", () => {
    expect(parseTokens("aaaaaaaaaaaaaaaa\n\n  bbbbbbbbbbbbbbbbbb \r\n")).toEqual([
      "aaaaaaaaaaaaaaaa",
      "bbbbbbbbbbbbbbbbbb",
    ]);
    expect(() => parseTokens("\n \n")).toThrow(/at least one/);
    expect(() => parseTokens("aaaaaaaaaaaaaaaa\nshort")).toThrow(/^token 2 must be 16/);
    expect(() => parseTokens("aaaaaaaaaaaaaaaa\nshort")).not.toThrow(/short/);
  });

  it("accepts any listed token and nothing else", () => {
    const tokens = ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"];
    expect(tokenAccepted(tokens, "aaaaaaaaaaaaaaaa")).toBe(true);
    expect(tokenAccepted(tokens, "bbbbbbbbbbbbbbbb")).toBe(true);
    expect(tokenAccepted(tokens, "aaaaaaaaaaaaaaa")).toBe(false);
    expect(tokenAccepted(tokens, "")).toBe(false);
    expect(tokenAccepted([], "aaaaaaaaaaaaaaaa")).toBe(false);
  });

  it("tells loopback names and addresses from others, with or without a port", () => {
    for (const h of [
      "localhost:8080",
      "127.0.0.1",
      "127.1.2.3:80",
      "[::1]:8080",
      "::1",
      "app.localhost",
      "LOCALHOST",
    ])
      expect(isLoopback(hostName(h)), h).toBe(true);
    for (const h of [
      "evil.example",
      "evil.example:8080",
      "0.0.0.0",
      "10.0.0.1:80",
      "[::2]:80",
      "localhost.evil.example",
      "",
    ])
      expect(isLoopback(hostName(h)), h).toBe(false);
  });
});

describe("the bucket count of a stats question", () => {
  const H = 3_600_000;
  it("counts the buckets from the one holding from to the one holding to - 1, now when to is unset", () => {
    expect(statsBuckets({ from: 0, to: 24 * H, every: H }, 0)).toBe(24);
    expect(statsBuckets({ from: 30 * 60_000, to: 2 * H + 1, every: H }, 0)).toBe(3);
    expect(statsBuckets({ from: -10 * H, every: H }, 0)).toBe(10);
    expect(statsBuckets({ every: H }, 0)).toBe(0);
    expect(statsBuckets({ from: 5 * H, to: H, every: H }, 0)).toBe(0);
  });
  it("refuses beyond the limit, naming it", () => {
    expect(bucketProblem(100_000, 100_000, "SERVE_MAX_BUCKETS")).toBeUndefined();
    expect(bucketProblem(100_001, 100_000, "--max-buckets")).toMatch(
      /100,001 buckets.*100,000 \(--max-buckets\)/,
    );
  });
});

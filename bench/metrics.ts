/** Prometheus text format, just enough to read our own services' counters and histograms. */
export type Samples = Map<string, number>;

export function parseMetrics(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    if (space < 0) continue;
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

/** Sum of every series of metric `name`, whatever its labels. */
export function total(samples: Samples, name: string): number {
  let sum = 0;
  for (const [key, value] of samples) {
    const bare = key.includes("{") ? key.slice(0, key.indexOf("{")) : key;
    if (bare === name) sum += value;
  }
  return sum;
}

/**
 * Upper bound of the `q` quantile of a histogram: the smallest bucket bound holding at least `q` of the
 * observations (what the metrics can tell, no interpolation). Infinity if it lies beyond the last bound.
 */
export function histogramBound(samples: Samples, name: string, q: number): number | undefined {
  const buckets: { le: number; count: number }[] = [];
  for (const [key, value] of samples) {
    if (!key.startsWith(`${name}_bucket{`)) continue;
    const le = /le="([^"]+)"/.exec(key)?.[1];
    if (le !== undefined)
      buckets.push({ le: le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le), count: value });
  }
  if (buckets.length === 0) return undefined;
  buckets.sort((a, b) => a.le - b.le);
  const all = buckets.at(-1)?.count ?? 0;
  if (all === 0) return undefined;
  return buckets.find((b) => b.count >= q * all)?.le;
}

/** Mean of a histogram (sum / count), or undefined when empty. */
export function histogramMean(samples: Samples, name: string): number | undefined {
  const count = total(samples, `${name}_count`);
  return count > 0 ? total(samples, `${name}_sum`) / count : undefined;
}

export async function scrape(port: number): Promise<Samples> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  return parseMetrics(await res.text());
}

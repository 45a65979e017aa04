/** Reading our own services' Prometheus metrics: counters, gauges and histograms, summed over their labels. */
/** Prometheus text format, just enough to read our own services' counters and histograms. */
export type Samples = Map<string, number>;

export function parseMetrics(text: string): Samples {
  const out: Samples = new Map();
  for (const line of text.split("\n")) {
    const space = line.lastIndexOf(" ");
    if (line.startsWith("#") || space < 0) continue;
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

/** Sum of every series of metric `name`, whatever its labels. */
export function total(samples: Samples, name: string): number {
  let sum = 0;
  for (const [key, value] of samples) if ((key.split("{", 1)[0] ?? key) === name) sum += value;
  return sum;
}

/** Upper bound of a histogram's `q` quantile: the smallest bucket bound holding `q` of the observations. */
export function histogramBound(samples: Samples, name: string, q: number): number | undefined {
  const buckets: { le: number; count: number }[] = [];
  for (const [key, count] of samples) {
    const le = key.startsWith(`${name}_bucket{`) ? /le="([^"]+)"/.exec(key)?.[1] : undefined;
    if (le !== undefined) buckets.push({ le: le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le), count });
  }
  buckets.sort((a, b) => a.le - b.le);
  const all = buckets.at(-1)?.count ?? 0;
  return all === 0 ? undefined : buckets.find((b) => b.count >= q * all)?.le;
}

/** Mean of a histogram (sum / count), or undefined when empty. */
export function histogramMean(samples: Samples, name: string): number | undefined {
  const count = total(samples, `${name}_count`);
  return count > 0 ? total(samples, `${name}_sum`) / count : undefined;
}

/** A service's /metrics on 127.0.0.1:`port`. */
export async function scrape(port: number): Promise<Samples> {
  return parseMetrics(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
}

/** One metric of a service, summed over its labels. */
export async function metric(port: number, name: string): Promise<number> {
  return total(await scrape(port), name);
}

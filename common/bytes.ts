/** Sizes in settings: `64MiB`, `1GiB`, `512k` or plain bytes, in binary units. */

const BYTE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  k: 1_024,
  kib: 1_024,
  m: 1_048_576,
  mib: 1_048_576,
  g: 1_073_741_824,
  gib: 1_073_741_824,
};

/** Bytes as README writes them: GiB or MiB when exact (`64MiB`), else the plain number. */
export function formatBytes(n: number): string {
  if (n > 0 && n % 1_073_741_824 === 0) return `${n / 1_073_741_824}GiB`;
  if (n > 0 && n % 1_048_576 === 0) return `${n / 1_048_576}MiB`;
  return String(n);
}

/** A setting parser for a size from `min` to `max` bytes, which prints what it parsed back as MiB or GiB. */
export const bytesParser = (
  min: number,
  max: number,
): ((raw: string) => number) & { readonly format: (n: number) => string } =>
  Object.assign(
    (raw: string): number => {
      const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(raw.trim().replaceAll("_", ""));
      const unit = m ? BYTE_UNITS[m[2]!.toLowerCase()] : undefined;
      if (!m || unit === undefined)
        throw new Error("must be a size such as 64MiB, 2GiB or a number of bytes");
      const n = Math.floor(Number(m[1]) * unit);
      if (n < min || n > max) throw new Error(`must be between ${formatBytes(min)} and ${formatBytes(max)}`);
      return n;
    },
    { format: formatBytes },
  );

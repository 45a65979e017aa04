/** Memory and CPU time of processes from /proc: one reading, a meter over an interval, a sampler over a phase. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** Clock ticks a second, the unit of utime and stime in /proc/<pid>/stat. */
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export interface ProcReading {
  /** Resident set size now (VmRSS) and its peak since the process started (VmHWM), KiB. */
  readonly rssKiB: number;
  readonly hwmKiB: number;
  /** User plus system CPU time since the process started, ms. */
  readonly cpuMs: number;
  /** CPU time of its children that have exited and been waited for (cutime + cstime), ms. */
  readonly childrenCpuMs: number;
}

/** RSS, peak RSS and CPU time of a process from /proc, or undefined once it is gone. */
export function readProc(pid: number): ProcReading | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
    // Fields after the parenthesised command name (which may hold spaces): state is field 3, utime 14, stime 15.
    const f = stat
      .slice(stat.lastIndexOf(")") + 2)
      .split(" ")
      .map(Number);
    const ms = (a: number, b: number) => (((f[a] ?? 0) + (f[b] ?? 0)) * 1_000) / CLK_TCK;
    return { rssKiB: kib("VmRSS"), hwmKiB: kib("VmHWM"), cpuMs: ms(11, 12), childrenCpuMs: ms(13, 14) };
  } catch {
    return undefined;
  }
}

/** Pids of a process's live children (/proc/<pid>/task/<pid>/children, Linux 3.5 on). */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * A group of short-lived processes measured through the shell that starts and waits for them: CPU is the shell's
 * own plus what its exited children used (the kernel adds a child's CPU time to its parent's when it is waited
 * for) plus what its live children used so far; RSS is the sum over the shell and its live children. The shell
 * must stay alive until the last sample, or the children's CPU time is lost with it.
 */
function readGroup(pid: number): ProcReading | undefined {
  const shell = readProc(pid);
  if (!shell) return undefined;
  const children = childrenOf(pid).flatMap((child) => readProc(child) ?? []);
  const rssKiB = children.reduce((sum, r) => sum + r.rssKiB, shell.rssKiB);
  const cpuMs = children.reduce((sum, r) => sum + r.cpuMs, shell.cpuMs + shell.childrenCpuMs);
  return { rssKiB, hwmKiB: rssKiB, cpuMs, childrenCpuMs: 0 };
}

/** A process to watch: its pid, or a group (see {@link readGroup}). */
export type Watched = number | { readonly group: number };

const read = (w: Watched) => (typeof w === "number" ? readProc(w) : readGroup(w.group));

/** Busy and total jiffies of all CPUs together, from the first line of /proc/stat. */
function readSystemCpu(): { busy: number; total: number } {
  const v = (readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "")
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - (v[3] ?? 0) - (v[4] ?? 0), total };
}

/** The pid listening on a local TCP port (to watch RabbitMQ's CPU), when `ss` can tell. */
export function pidListeningOn(port: number): number | undefined {
  try {
    const m = /pid=(\d+)/.exec(execFileSync("ss", ["-ltnpH", `sport = :${port}`], { encoding: "utf8" }));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export interface ProcessUsage {
  /** Peak RSS over the run, MiB (VmHWM at the end, the kernel's own; for a group, the highest sum sampled). */
  readonly peakRssMiB: number;
  /** RSS at the last sample, MiB. */
  readonly lastRssMiB: number;
  /** CPU time used during the sampled interval, s; over the wall time of the interval (1.0: one core busy). */
  readonly cpuSeconds: number;
  readonly cores: number;
  /** RSS samples, MiB, one per sampling interval. */
  readonly rssSeriesMiB: number[];
}

export interface UsageReport {
  readonly seconds: number;
  readonly processes: Record<string, ProcessUsage>;
  /** Share of all the machine's CPUs busy during the interval (any process, ours or not), 0..1. */
  readonly machineBusy: number;
  readonly cpus: number;
}

const MiB = (kib: number) => Math.round((kib / 1_024) * 10) / 10;

/** Samples RSS and CPU time of named processes (or groups) every `intervalMs` until `stop()`. */
export class UsageSampler {
  readonly #watched: [string, Watched][];
  readonly #first: Record<string, ProcReading> = {};
  readonly #last: Record<string, ProcReading> = {};
  readonly #series: Record<string, number[]> = {};
  readonly #timer: NodeJS.Timeout;
  readonly #t0 = performance.now();
  readonly #cpu0 = readSystemCpu();

  constructor(pids: Record<string, Watched | undefined>, intervalMs = 500) {
    this.#watched = Object.entries(pids).flatMap(([name, w]): [string, Watched][] =>
      w === undefined ? [] : [[name, w]],
    );
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }

  #sample(): void {
    for (const [name, watched] of this.#watched) {
      const now = read(watched);
      if (!now) continue;
      const previous = this.#last[name];
      // A process that has exited but is not yet reaped has no memory figures left: keep the last ones. A group's
      // peak is the highest sum sampled.
      const r =
        now.hwmKiB === 0 && previous
          ? { ...now, rssKiB: previous.rssKiB, hwmKiB: previous.hwmKiB }
          : typeof watched === "number"
            ? now
            : { ...now, hwmKiB: Math.max(previous?.hwmKiB ?? 0, now.rssKiB) };
      this.#first[name] ??= r;
      this.#last[name] = r;
      this.#series[name] = [...(this.#series[name] ?? []), MiB(r.rssKiB)];
    }
  }

  /** Takes a last sample (call it while the processes still run) and stops sampling. */
  stop(cpus: number): UsageReport {
    this.#sample();
    clearInterval(this.#timer);
    const seconds = (performance.now() - this.#t0) / 1_000;
    const cpu1 = readSystemCpu();
    const processes: Record<string, ProcessUsage> = {};
    for (const [name] of this.#watched) {
      const [first, last] = [this.#first[name], this.#last[name]];
      if (!first || !last) continue;
      const cpuSeconds = (last.cpuMs - first.cpuMs) / 1_000;
      processes[name] = {
        peakRssMiB: MiB(last.hwmKiB),
        lastRssMiB: MiB(last.rssKiB),
        cpuSeconds: Math.round(cpuSeconds * 100) / 100,
        cores: Math.round((cpuSeconds / seconds) * 100) / 100,
        rssSeriesMiB: this.#series[name] ?? [],
      };
    }
    const busy = (cpu1.busy - this.#cpu0.busy) / Math.max(1, cpu1.total - this.#cpu0.total);
    return { seconds, processes, machineBusy: Math.round(busy * 1_000) / 1_000, cpus };
  }
}

/**
 * Starts measuring the CPU time of named processes; the function returned gives each one's CPU time since, in ms
 * (processes already gone are left out). Granularity: one clock tick (10 ms).
 */
export function cpuMeter(pids: Record<string, number | undefined>): () => Record<string, number> {
  const start = Object.entries(pids).flatMap(([name, pid]) => {
    const r = pid === undefined ? undefined : readProc(pid);
    return r && pid !== undefined ? [{ name, pid, cpuMs: r.cpuMs }] : [];
  });
  return () =>
    Object.fromEntries(
      start.flatMap((s) => {
        const r = readProc(s.pid);
        return r ? [[s.name, r.cpuMs - s.cpuMs]] : [];
      }),
    );
}

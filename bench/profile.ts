/** Summaries of `node --cpu-prof` profiles: where the self time goes, by function and by module. */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  readonly name: string;
  readonly ms: number;
  /** Share of the profile's busy (non-idle) time. */
  readonly busyShare: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  readonly idleMs: number;
  /** Top functions by self time. */
  readonly functions: SelfTime[];
  /** Self time by module: an npm package, a node: built-in, one of our folders, GC, program. */
  readonly modules: SelfTime[];
  /** Busy time by what the work is for (GROUPS), whole stacks considered. */
  readonly groups: SelfTime[];
}

/**
 * What the gateway's and processor's CPU goes to, as issue 28 asks for it. A sample counts for the first group,
 * in this order, that any frame of its stack belongs to: a PUBACK written from an AMQP confirm counts as a PUBACK
 * write, not as AMQP; the structured clone behind `postMessage` as the hop to the SQLite worker. Patterns match
 * `<function> <file>` of a frame.
 */
const GROUPS: readonly (readonly [string, RegExp])[] = [
  ["allocation and GC", /^\(garbage collector\) $/],
  ["metrics (prom-client)", /prom-client\//],
  ["hop to the SQLite worker (postMessage, structured clone)", /store\/worker-store|^postMessage /],
  ["PUBACK writes", /^(puback|write) mqtt\/connection|mqtt\/ack-sequencer|^uncork /],
  ["JSON and validation", /gateway\/(validate|formats|senml|sparkplug)|schemas\/rules|^parse .*JSON|^JSON/],
  ["Avro (encode, decode, framing)", /avsc\/|schemas\/|gateway\/encode|processor\/decode/],
  ["AMQP framing, confirms, acks", /amqplib\/|amqp\//],
  ["socket and MQTT framing", /mqtt-packet\/|bl\/|mqtt\/|^onStreamRead |node:net/],
  ["batching and commit bookkeeping", /processor\/|common\//],
];

function where(url: string): { module: string; file: string } {
  const path = url.replace(/^file:\/\//, "");
  if (path === "") return { module: "(native/V8)", file: "" };
  if (path.startsWith("node:")) return { module: "node: built-ins", file: path };
  const nm = path.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = path.slice(nm + "/node_modules/".length).split("/");
    const pkg = rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] ?? "?");
    return { module: pkg, file: `${pkg}/${rest.slice(pkg.includes("/") ? 2 : 1).join("/")}` };
  }
  const dist = path.lastIndexOf("/dist/");
  if (dist >= 0) {
    const rel = path.slice(dist + "/dist/".length);
    return { module: `telemetry ${rel.split("/")[0]}/`, file: rel };
  }
  return { module: path, file: path };
}

/** Self time per function and per module of one .cpuprofile file. */
export function summarizeProfile(file: string, top = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time since the previous sample; it is spent in what sample i-1 saw running.
  for (let i = 1; i < p.samples.length; i++) {
    const id = p.samples[i - 1]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const fn = new Map<string, number>();
  const mod = new Map<string, number>();
  let idleUs = 0;
  let totalUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    totalUs += us;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === "(idle)") {
      idleUs += us;
      continue;
    }
    const w = where(url);
    const special = functionName.startsWith("(") && url === "";
    const module = special ? functionName : w.module;
    const name = special ? functionName : `${functionName || "(anonymous)"} ${w.file}:${lineNumber + 1}`;
    fn.set(name, (fn.get(name) ?? 0) + us);
    mod.set(module, (mod.get(module) ?? 0) + us);
  }
  const busyUs = Math.max(1, totalUs - idleUs);
  const groups = groupTimes(p, selfUs);
  const ranked = (m: Map<string, number>, n: number): SelfTime[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({
        name,
        ms: Math.round(us / 1_000),
        busyShare: Math.round((us / busyUs) * 1_000) / 1_000,
      }));
  return {
    file,
    totalMs: Math.round(totalUs / 1_000),
    idleMs: Math.round(idleUs / 1_000),
    functions: ranked(fn, top),
    modules: ranked(mod, 12),
    groups: ranked(groups, GROUPS.length + 1),
  };
}

/** Busy time per GROUPS entry (and "other"), each node's self time given to the first group its stack matches. */
function groupTimes(p: CpuProfile, selfUs: ReadonlyMap<number, number>): Map<string, number> {
  const parent = new Map<number, CpuProfileNode>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const out = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const leaf = byId.get(id);
    if (!leaf || leaf.callFrame.functionName === "(idle)") continue;
    const frames: string[] = [];
    for (let n: CpuProfileNode | undefined = leaf; n; n = parent.get(n.id)) {
      frames.push(`${n.callFrame.functionName} ${where(n.callFrame.url).file}`);
    }
    const group =
      GROUPS.find(([, re]) => frames.some((f) => re.test(f)))?.[0] ??
      "other (node internals, timers, program)";
    out.set(group, (out.get(group) ?? 0) + us);
  }
  return out;
}

/** Summaries of every .cpuprofile under `dir` (one per process that ran with --cpu-prof there). */
export function summarizeDir(dir: string, top = 15): ProfileSummary[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
  } catch {
    return [];
  }
  return files.map((f) => summarizeProfile(join(dir, f), top));
}

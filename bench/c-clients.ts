/**
 * The broker-only baseline a user would try first, with the C clients of Debian's `mosquitto-clients`: one
 * `mosquitto_pub -q 1 -l` process per device and sensor, each fed its readings on stdin from a file, into a
 * Mosquitto, received by one `mosquitto_sub -q 1` on a persistent session. The same publishers, fed the same files,
 * drive the pipeline (see `cPublisherLoad`), so "end to end / broker alone" is a ratio of two figures measured in one
 * run with the same load.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Load } from "./pipeline.js";
import { childrenOf, type UsageReport, UsageSampler } from "./proc.js";
import { deviceName, type PublisherConfig, readingValue, sensorName } from "./publisher.js";
import { round, until } from "./util.js";

const execFileAsync = promisify(execFile);
const [PUB, SUB] = ["mosquitto_pub", "mosquitto_sub"];
const WAIT = { pollMs: 250, stallMs: 30_000 } as const;
const SUBSCRIBE_TIMEOUT_MS = 10_000;
const STDERR_KEPT = 4_096;

/** One publisher's input: the topic under the phase's prefix (`<prefix>/<suffix>`) and the file of its lines. */
export interface CPublisherInput {
  readonly topicSuffix: string;
  readonly path: string;
}

/** True when `mosquitto_pub` and `mosquitto_sub` can be run (Debian: `apt-get install mosquitto-clients`). */
export async function haveCClients(): Promise<boolean> {
  return execFileAsync("bash", ["-c", `command -v ${PUB} && command -v ${SUB}`]).then(
    () => true,
    () => false,
  );
}

/**
 * Writes one file per device and sensor into `dir`, one JSON reading a line, holding exactly the readings the lean
 * publisher would send for `r` (reading `i` to key `i % keys`, `ts = baseTs + floor(i / keys)`, the same values), so
 * the exactly-once check of pipeline.ts applies unchanged. `seq` is the reading's index: the C publisher cannot
 * write its publish time, so these runs give no publish-to-commit latency.
 */
export function writeReadingFiles(
  dir: string,
  r: Pick<PublisherConfig, "devicePrefix" | "devices" | "sensors" | "total" | "baseTs">,
): CPublisherInput[] {
  const keys = r.devices * r.sensors;
  return Array.from({ length: keys }, (_, j) => {
    const lines: string[] = [];
    for (let i = j; i < r.total; i += keys) {
      lines.push(
        `{"ts":${r.baseTs + Math.floor(i / keys)},"value":${readingValue(i)},"unit":"u","seq":${i}}\n`,
      );
    }
    const path = join(dir, `c-publisher-${j}.lines`);
    writeFileSync(path, lines.join(""));
    return {
      topicSuffix: `${deviceName(r.devicePrefix, Math.floor(j / r.sensors))}/${sensorName(j % r.sensors)}`,
      path,
    };
  });
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** A command of a group: its argv, and files for its stdin and stdout. */
type Command = { readonly argv: readonly string[]; readonly stdin?: string; readonly stdout?: string };

/**
 * A bash process that starts `commands` when told to (`go`), waits for all of them (`done`: how many exited with a
 * code other than 0) and then stays alive until released, so its children's CPU time (added to its own when it
 * waits for them) can still be read from /proc (see proc.ts). `release` kills (SIGKILL, by pid) any command still
 * running and lets the shell exit.
 */
function startGroup(commands: readonly Command[]) {
  const lines = ["read -r _ || exit 0"];
  commands.forEach((c, k) => {
    const redirect = `${c.stdin ? ` < ${quote(c.stdin)}` : " < /dev/null"}${c.stdout ? ` > ${quote(c.stdout)}` : ""}`;
    lines.push(`${c.argv.map(quote).join(" ")}${redirect} &`, `p${k}=$!`);
  });
  lines.push("failed=0", ...commands.map((_, k) => `wait "$p${k}" || failed=$((failed+1))`));
  lines.push('echo "done $failed"', "read -r _");
  const shell = spawn("bash", ["-c", lines.join("\n")], { stdio: ["pipe", "pipe", "pipe"] });
  const pid = shell.pid;
  if (pid === undefined) throw new Error("could not start bash for the C clients");
  let [stderr, out] = ["", ""];
  shell.stderr.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-STDERR_KEPT);
  });
  shell.stdin.on("error", () => undefined);
  const exited = new Promise<void>((resolve) => shell.once("exit", () => resolve()));
  const done = new Promise<number>((resolve, reject) => {
    shell.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const m = /done (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void exited.then(() => reject(new Error(`the C clients' shell exited early: ${stderr.trim()}`)));
  });
  done.catch(() => undefined);
  return {
    pid,
    go: () => shell.stdin.write("go\n"),
    done,
    async release() {
      for (const child of childrenOf(pid)) process.kill(child, "SIGKILL");
      shell.stdin.end();
      const timer = setTimeout(() => shell.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    },
    stderr: () => stderr,
  };
}

/** Host and port of an MQTT URL, as the C clients' -h and -p. */
function hostPort(mqttUrl: string): string[] {
  const u = new URL(mqttUrl);
  return ["-h", u.hostname, "-p", u.port || "1883"];
}

/**
 * One `mosquitto_pub -q 1 -l -M <inflight>` per input. `inflight` is the QoS 1 window of each publisher
 * (libmosquitto's default is 20, which makes the publishers, not the broker, set the pace).
 */
function publishers(
  mqttUrl: string,
  topicPrefix: string,
  clientIdPrefix: string,
  inputs: readonly CPublisherInput[],
  inflight: number,
) {
  return startGroup(
    inputs.map((input, k) => ({
      argv: [
        PUB,
        ...hostPort(mqttUrl),
        "-q",
        "1",
        "-M",
        String(inflight),
        "-i",
        `${clientIdPrefix}-${k}`,
        "-t",
        `${topicPrefix}/${input.topicSuffix}`,
        "-l",
      ],
      stdin: input.path,
    })),
  );
}

/**
 * The C publishers as the load of a pipeline phase (runPhase in pipeline.ts). They do not report their PUBACKs
 * while they run; `done` resolves once every one of them has exited (exit code 0: every line published and
 * PUBACKed at QoS 1).
 */
export function cPublisherLoad(o: {
  mqttUrl: string;
  topicPrefix: string;
  clientIdPrefix: string;
  inputs: CPublisherInput[];
  total: number;
  inflight: number;
}): Load {
  const group = publishers(o.mqttUrl, o.topicPrefix, o.clientIdPrefix, o.inputs, o.inflight);
  let firstPublishAt = 0;
  const done = group.done.then((failed) => {
    const now = Date.now();
    if (failed > 0) process.stderr.write(`bench: ${failed} mosquitto_pub failed: ${group.stderr().trim()}\n`);
    const acked = failed > 0 ? 0 : o.total;
    return {
      type: "done" as const,
      sent: o.total,
      acked,
      failed,
      valueSum: 0,
      firstPublishAt,
      lastPublishAt: now,
      lastAckAt: now,
    };
  });
  return {
    watch: { publisher: { group: group.pid } },
    seqIsPublishTime: false,
    start() {
      firstPublishAt = Date.now();
      group.go();
    },
    acked: () => undefined,
    done,
    stop: () => undefined,
    kill: () => group.release(),
  };
}

/** The broker alone: how fast the C subscriber receives what the C publishers send. */
export interface BrokerBaseline {
  readonly label: string;
  /** Each publisher's QoS 1 window (`mosquitto_pub -M`). */
  readonly inflight: number;
  readonly received: number;
  /** First to last message received by mosquitto_sub (its own clock, `-F %U`). */
  readonly seconds: number;
  readonly perSecond: number;
  readonly failedPublishers: number;
  readonly usage: UsageReport;
}

/**
 * Runs the C publishers into the Mosquitto at `mqttUrl` (pid `brokerPid`, sampled) and one `mosquitto_sub -q 1 -c`
 * with a fixed client id: a persistent session (clean session off) that is first created and subscribed by a
 * `mosquitto_sub -E` run, so no message published before the real subscriber connects is lost or downgraded.
 */
export async function brokerBaseline(o: {
  mqttUrl: string;
  brokerPid: number;
  topicPrefix: string;
  runId: string;
  inputs: CPublisherInput[];
  total: number;
  inflight: number;
  workDir: string;
  cpus: number;
}): Promise<BrokerBaseline> {
  const session = [
    ...hostPort(o.mqttUrl),
    "-q",
    "1",
    "-c",
    "-i",
    `bench-c-sub-${o.runId}`,
    "-t",
    `${o.topicPrefix}/+/+`,
  ];
  await execFileAsync(SUB, [...session, "-E"], { timeout: SUBSCRIBE_TIMEOUT_MS });
  const outFile = join(o.workDir, `c-subscriber-${o.inflight}.out`);
  const sub = startGroup([{ argv: [SUB, ...session, "-C", String(o.total), "-F", "%U"], stdout: outFile }]);
  const pubs = publishers(o.mqttUrl, o.topicPrefix, `bench-c-pub-${o.runId}`, o.inputs, o.inflight);
  const sampler = new UsageSampler({
    publisher: { group: pubs.pid },
    subscriber: { group: sub.pid },
    mosquitto: o.brokerPid,
  });
  let usage: UsageReport | undefined;
  try {
    sub.go();
    pubs.go();
    let finished = false;
    void Promise.all([sub.done, pubs.done]).then(() => {
      finished = true;
    });
    const size = () => (existsSync(outFile) ? statSync(outFile).size : 0);
    await until(`broker-only baseline (${sub.stderr()} ${pubs.stderr()})`, () => finished, {
      ...WAIT,
      progress: size,
    });
    usage = sampler.stop(o.cpus);
  } finally {
    usage ??= sampler.stop(o.cpus);
    await Promise.all([sub.release(), pubs.release()]);
  }
  const failedPublishers = await pubs.done;
  if ((await sub.done) > 0) throw new Error(`mosquitto_sub failed: ${sub.stderr().trim()}`);
  const stamps = readFileSync(outFile, "utf8").split("\n").filter(Boolean).map(Number);
  const seconds = Math.max(0.001, (stamps.at(-1) ?? 0) - (stamps[0] ?? 0));
  const perSecond = Math.round(stamps.length / seconds);
  return {
    label: "broker only",
    inflight: o.inflight,
    received: stamps.length,
    seconds: round(seconds, 3),
    perSecond,
    failedPublishers,
    usage,
  };
}

/**
 * The fault tests' one fixture: private brokers for a test file, and for each test a pipeline of its own on them
 * (names, gateway, processor), each stopped by `[Symbol.asyncDispose]`, so a test writes
 * `await using run = await brokers().pipeline("label")` and leaves nothing behind when it fails half-way. A test on
 * the shared brokers writes `await using run = pipelineOn(testNames("label"))`.
 */
import { rmSync } from "node:fs";
import { afterAll, beforeAll } from "vitest";
import { faultNames } from "./fault-stream.js";
import type {
  PrivateMosquitto,
  PrivateMosquittoOptions,
  PrivateRabbit,
  PrivateRabbitOptions,
} from "./private-brokers.js";
import { startPrivateMosquitto, startPrivateRabbit } from "./private-brokers.js";
import { cleanup, type Service, startService, type TestNames, untilReady } from "./services.js";

/** A private RabbitMQ node starts in 5-10 s on an idle machine; much longer on a loaded one. */
const BROKERS_START_TIMEOUT_MS = 90_000;
const BROKERS_STOP_TIMEOUT_MS = 60_000;

export interface PrivateBrokersOptions {
  /** The private Mosquitto's options (one is always started). */
  readonly mosquitto?: PrivateMosquittoOptions;
  /** A private RabbitMQ node too (with these options when an object); the shared one otherwise. */
  readonly rabbit?: boolean | PrivateRabbitOptions;
}

/** One test's own names on the private brokers, and the services it started; disposing stops them all. */
export interface PrivatePipeline extends AsyncDisposable {
  readonly names: TestNames;
  /**
   * Starts `telemetry gateway` with the test's environment plus `env`, through `prefix` when given (as
   * `startService` does, e.g. `ip netns exec <ns>`); SIGKILLed on dispose if still running.
   */
  gateway(env?: Record<string, string>, prefix?: readonly string[]): Promise<Service>;
  /** As `gateway`, for `telemetry processor`. */
  processor(env?: Record<string, string>, prefix?: readonly string[]): Promise<Service>;
  /** Starts both together with the same extra `env` and resolves once both answer 200 on /readyz. */
  start(env?: Record<string, string>): Promise<{ gateway: Service; processor: Service }>;
}

/** Options asking for a private RabbitMQ node. */
export type WithPrivateRabbit = PrivateBrokersOptions & { readonly rabbit: true | PrivateRabbitOptions };

/** Brokers of one test file's own; disposing stops them and deletes their files. */
export interface PrivateBrokers<R extends PrivateRabbit | undefined = PrivateRabbit | undefined>
  extends AsyncDisposable {
  readonly mosquitto: PrivateMosquitto;
  /** The private node, or undefined when the file uses the shared RabbitMQ. */
  readonly rabbit: R;
  /**
   * A pipeline of one test's own on these brokers: a unique queue, topic prefix, gateway id and database, services
   * started through it. Disposing it SIGKILLs every service it started (a fault test decides itself how they stop),
   * then deletes the queues, the gateway's MQTT session and the files; when a broker is down by then, the files go
   * anyway and the broker takes the rest with it.
   */
  pipeline(label: string): Promise<PrivatePipeline>;
}

/** Starts the brokers `opts` asks for, at once; resolves when every one accepts connections. */
export function startPrivateBrokers(opts: WithPrivateRabbit): Promise<PrivateBrokers<PrivateRabbit>>;
export function startPrivateBrokers(opts?: PrivateBrokersOptions): Promise<PrivateBrokers>;
export async function startPrivateBrokers(opts: PrivateBrokersOptions = {}): Promise<PrivateBrokers> {
  const rabbitOpts = opts.rabbit === true ? {} : opts.rabbit || undefined;
  const [started, startedRabbit] = await Promise.allSettled([
    startPrivateMosquitto(opts.mosquitto),
    rabbitOpts ? startPrivateRabbit(rabbitOpts) : undefined,
  ]);
  if (started.status === "rejected" || startedRabbit.status === "rejected") {
    // The one that did start is not left running.
    await Promise.allSettled([
      started.status === "fulfilled" ? started.value.stop() : undefined,
      startedRabbit.status === "fulfilled" ? startedRabbit.value?.stop() : undefined,
    ]);
    throw started.status === "rejected" ? started.reason : (startedRabbit as PromiseRejectedResult).reason;
  }
  const mosquitto = started.value;
  const rabbit = startedRabbit.value;
  if (rabbit) console.log(`[private rabbitmq] node ${rabbit.node} started in ${rabbit.startupMs} ms`);
  return {
    mosquitto,
    rabbit,
    async pipeline(label) {
      return pipelineOn(faultNames(label, { mqttUrl: mosquitto.url, amqpUrl: rabbit?.url }));
    },
    async [Symbol.asyncDispose]() {
      // Each broker goes even when the other one fails to stop.
      const results = await Promise.allSettled([mosquitto.stop(), rabbit?.stop()]);
      const failed = results.filter((r) => r.status === "rejected");
      if (failed.length > 0)
        throw new AggregateError(
          failed.map((r) => r.reason),
          "private brokers did not stop",
        );
    },
  };
}

/**
 * Private brokers shared by every test of the calling `describe` (or file): started in its `beforeAll`, disposed
 * in its `afterAll`. Returns the getter a test calls once they run.
 */
export function privateBrokersPerFile(opts: WithPrivateRabbit): () => PrivateBrokers<PrivateRabbit>;
export function privateBrokersPerFile(opts?: PrivateBrokersOptions): () => PrivateBrokers;
export function privateBrokersPerFile(opts: PrivateBrokersOptions = {}): () => PrivateBrokers {
  let brokers: PrivateBrokers | undefined;
  beforeAll(async () => {
    brokers = await startPrivateBrokers(opts);
  }, BROKERS_START_TIMEOUT_MS);
  afterAll(async () => {
    await brokers?.[Symbol.asyncDispose]();
  }, BROKERS_STOP_TIMEOUT_MS);
  return () => {
    if (!brokers) throw new Error("the private brokers did not start (see beforeAll)");
    return brokers;
  };
}

/**
 * A pipeline on the brokers `names` points at (private or shared); see `PrivateBrokers.pipeline` for what
 * disposing it does.
 */
export function pipelineOn(names: TestNames): PrivatePipeline {
  const services: Service[] = [];
  const started = async (
    command: "gateway" | "processor",
    env: Record<string, string> = {},
    prefix: readonly string[] = [],
  ) => {
    const service = await startService(command, { ...names.env, ...env }, [], prefix);
    services.push(service);
    return service;
  };
  return {
    names,
    gateway: (env, prefix) => started("gateway", env, prefix),
    processor: (env, prefix) => started("processor", env, prefix),
    async start(env) {
      const [gateway, processor] = await Promise.all([started("gateway", env), started("processor", env)]);
      await untilReady(gateway, processor);
      return { gateway, processor };
    },
    async [Symbol.asyncDispose]() {
      for (const s of services) {
        // A service that died by itself says why: the test that failed on it will not.
        if (s.proc.exitCode !== null && s.proc.exitCode !== 0)
          console.log(`[exited ${s.proc.exitCode}] ${s.stderr()}\n${lastLogLines(s)}`);
      }
      await Promise.all(services.map((s) => s.stop("SIGKILL")));
      await cleanup(names).catch(() => rmSync(names.dir, { recursive: true, force: true }));
    },
  };
}

const LOG_LINES_SHOWN = 15;

function lastLogLines(service: Service): string {
  return service.logs
    .slice(-LOG_LINES_SHOWN)
    .map((l) => JSON.stringify(l))
    .join("\n");
}

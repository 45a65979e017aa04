/** Entry point of the benchmark's child processes: `worker.js <role> <config as JSON>` (forked by ipc.ts). */
import {
  type NaiveGatewayConfig,
  type NaiveProcessorConfig,
  runNaiveGateway,
  runNaiveProcessor,
} from "./naive.js";
import { type PublisherConfig, runPublisher } from "./publisher.js";
import { runAmqpPublisher } from "./raw.js";

const [role, json = "{}"] = process.argv.slice(2);
const config: unknown = JSON.parse(json);

const roles: Record<string, () => Promise<void>> = {
  publisher: () => runPublisher(config as PublisherConfig),
  "amqp-publisher": () => runAmqpPublisher(config as Parameters<typeof runAmqpPublisher>[0]),
  "naive-gateway": () => runNaiveGateway(config as NaiveGatewayConfig),
  "naive-processor": () => runNaiveProcessor(config as NaiveProcessorConfig),
};

const run = role === undefined ? undefined : roles[role];
if (run === undefined) {
  process.stderr.write(`bench worker: unknown role ${JSON.stringify(role)}\n`);
  process.exit(2);
}
run().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `bench ${role}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);

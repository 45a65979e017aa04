#!/usr/bin/env node
import { type CliCommand, commandList } from "../common/command.js";
import { gatewayCommand } from "../gateway/command.js";
import { backupCommand, checkCommand, replayCommand, statusCommand } from "../ops/index.js";
import { processorCommand } from "../processor/command.js";
import { queryCommand } from "../query/command.js";
import { schemasCommand } from "../schemas/command.js";
import { serveCommand } from "../serve/command.js";
import { simulateCommand } from "../simulators/command.js";
import { spoolCommand } from "../spool/command.js";

/** The long-running services `telemetry check` validates. */
const services: readonly CliCommand[] = [gatewayCommand, processorCommand, serveCommand];

const commands: readonly CliCommand[] = [
  gatewayCommand,
  processorCommand,
  simulateCommand,
  schemasCommand,
  queryCommand,
  serveCommand,
  statusCommand,
  replayCommand,
  backupCommand,
  spoolCommand,
  checkCommand(services),
];

function usage(): string {
  return [
    "Usage: telemetry <command> [options]",
    "",
    "Sensor telemetry pipeline: MQTT -> gateway -> RabbitMQ -> processor -> SQLite.",
    "",
    "Commands:",
    ...commandList(commands.map((c) => ({ word: c.name, summary: c.summary }))),
    "",
    "Run `telemetry <command> --help` for a command's options. Flags override environment variables,",
    "which override defaults. A bad option exits with code 2 before anything connects.",
    "",
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`telemetry: unknown command ${JSON.stringify(name)}; try telemetry --help\n`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(command.help(rest));
    return 0;
  }
  return command.execute(rest, process.env);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`telemetry: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);

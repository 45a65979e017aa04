import { type ConfigOf, collectConfig, effectiveConfig, helpText, type Spec, wrap } from "./config.js";

/**
 * One `telemetry <name>` subcommand. The CLI parses argv and the environment against `spec` (exit 2 on a bad
 * value, before `run` is called), prints `--help` from it, then calls `run` and exits with the code it returns.
 * Long-running services resolve `run` after SIGINT/SIGTERM has settled their in-flight work.
 */
export interface Command<S extends Spec = Spec> {
  readonly name: string;
  readonly usage: string;
  readonly summary: string;
  readonly spec: S;
  readonly extraHelp?: string;
  /** Names of the required positional arguments (`["FILE"]`), handed to `run` in order. */
  readonly args?: readonly string[];
  /** Checks across settings (e.g. prefetch >= batch size); return a one-line error to refuse to start. */
  readonly check?: (config: ConfigOf<S>) => string | undefined;
  readonly run: (config: ConfigOf<S>, args: readonly string[]) => Promise<number>;
}

/** A whole configuration read without running anything: every problem, and what would run (secrets masked). */
export interface Validation {
  /** One line each; empty when the configuration is good. */
  readonly problems: readonly string[];
  /** The parsed settings by key, when every one parsed (for `check --connect`). */
  readonly config?: Readonly<Record<string, unknown>>;
  /** Each setting by variable name as it would print (secrets `***`), when every one parsed. */
  readonly effective?: Readonly<Record<string, string>>;
}

/** A command as the CLI sees it, whatever its settings. */
export interface CliCommand {
  readonly name: string;
  readonly summary: string;
  /** The `--help` text; `argv` (the arguments after the command's name) selects a subcommand's help. */
  help(argv?: readonly string[]): string;
  /** Parses `argv` and `env` (a bad value: one line on stderr, exit code 2), then runs. */
  execute(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Promise<number>;
  /** Reads the configuration `execute` would read, reporting every problem at once; connects to nothing. */
  validate?(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Validation;
}

export function defineCommand<S extends Spec>(c: Command<S>): Command<S> & CliCommand {
  return {
    ...c,
    help: () => helpText(c.usage, c.summary, c.spec, c.extraHelp),
    validate(argv, env) {
      const { config, problems } = collectConfig(c.spec, argv, env, c.args);
      if (!config) return { problems };
      const problem = c.check?.(config);
      return {
        problems: problem ? [problem] : [],
        config: config as Readonly<Record<string, unknown>>,
        effective: effectiveConfig(c.spec, config),
      };
    },
    async execute(argv, env) {
      const { config, problems, args } = collectConfig(c.spec, argv, env, c.args);
      const problem = problems[0] ?? (config && c.check?.(config));
      if (problem || !config) {
        process.stderr.write(`telemetry ${c.name}: ${problem ?? "invalid configuration"}\n`);
        return 2;
      }
      return c.run(config, args);
    },
  };
}

/** Width `--help` wraps command lists to. */
const HELP_WIDTH = 100;

/**
 * A list of commands with their whole summaries (never cut mid-sentence), each wrapped under its name:
 * `  name  summary...` with continuation lines aligned after the name column.
 */
export function commandList(
  entries: readonly { readonly word: string; readonly summary: string }[],
): string[] {
  const width = Math.max(...entries.map((e) => e.word.length));
  const indent = " ".repeat(width + 4);
  return entries.map(
    (e) => `  ${e.word.padEnd(width)}  ${wrap(e.summary, HELP_WIDTH - indent.length, indent)}`,
  );
}

/**
 * A command made of subcommands, `telemetry <name> <subcommand> [options]`, e.g. `telemetry schemas check`. Each
 * subcommand is a {@link defineCommand} whose `name` is the full `"<name> <subcommand>"`. A missing or unknown
 * subcommand prints one line and exits with code 2; `--help` shows the subcommand's help, or the list of them.
 */
export function defineGroup(g: {
  readonly name: string;
  readonly summary: string;
  readonly commands: readonly CliCommand[];
}): CliCommand {
  const word = (c: CliCommand) => c.name.slice(g.name.length + 1);
  const find = (argv: readonly string[] | undefined) => g.commands.find((c) => word(c) === argv?.[0]);
  const usage = () =>
    [
      `Usage: telemetry ${g.name} <${g.commands.map(word).join("|")}> [options]`,
      "",
      g.summary,
      "",
      "Subcommands:",
      ...commandList(g.commands.map((c) => ({ word: word(c), summary: c.summary }))),
      "",
      `Run \`telemetry ${g.name} <subcommand> --help\` for its options.`,
      "",
    ].join("\n");
  return {
    name: g.name,
    summary: g.summary,
    help: (argv) => find(argv)?.help(argv?.slice(1)) ?? usage(),
    async execute(argv, env) {
      const sub = find(argv);
      if (sub) return sub.execute(argv.slice(1), env);
      const what =
        argv[0] === undefined ? "a subcommand is missing" : `unknown subcommand ${JSON.stringify(argv[0])}`;
      process.stderr.write(
        `telemetry ${g.name}: ${what}; one of ${g.commands.map(word).join(", ")} (try --help)\n`,
      );
      return 2;
    },
  };
}

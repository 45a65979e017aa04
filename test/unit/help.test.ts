import { describe, expect, it } from "vitest";
import { formatDuration, helpText, parsers, setting } from "../../common/config.js";
import { gatewayCommand } from "../../gateway/index.js";
import { processorCommand } from "../../processor/index.js";
import { runCli } from "../../scripts/spawn.js";

describe("--help", () => {
  it("durations print as README writes them", () => {
    expect(formatDuration(10_000)).toBe("10s");
    expect(formatDuration(50)).toBe("50ms");
    expect(formatDuration(1_500)).toBe("1500ms");
    expect(formatDuration(300_000)).toBe("5m");
    expect(formatDuration(3_600_000)).toBe("1h");
    expect(formatDuration(0)).toBe("0s");
    const spec = {
      delay: setting({
        flag: "delay",
        env: "DELAY",
        default: 30_000,
        description: "d",
        parse: parsers.duration(0, 60_000),
      }),
    };
    expect(helpText("x", "X.", spec)).toContain("--delay <value>  [DELAY]  default 30s");
  });

  it("a duration out of range says its bounds as durations", () => {
    expect(() => parsers.duration(1_000, 3_600_000)("10ms")).toThrow("must be between 1s and 1h");
  });

  it("the services' help shows their durations as durations", () => {
    expect(processorCommand.help()).toContain("--batch-delay <value>  [BATCH_DELAY]  default 50ms");
    expect(processorCommand.help()).toContain("--drain-timeout <value>  [DRAIN_TIMEOUT]  default 10s");
    expect(gatewayCommand.help()).toContain("--stall-timeout <value>  [STALL_TIMEOUT]  default 30s");
  });

  it("the top-level help prints each command's summary whole", async () => {
    const { code, stdout } = await runCli(["--help"]);
    expect(code).toBe(0);
    const flat = stdout.replace(/\s+/g, " ");
    for (const command of [gatewayCommand, processorCommand]) {
      expect(flat).toContain(command.summary.replace(/\s+/g, " "));
    }
    for (const line of stdout.split("\n")) expect(line.length).toBeLessThanOrEqual(100);
  });
});

import { describe, expect, it } from "vitest";
import { ConfigError, effectiveConfig, parseConfig, splitUrlList } from "../../common/config.js";
import { silentLogger } from "../../common/log.js";
import { gatewayCommand } from "../../gateway/index.js";
import { resolveOptions } from "../../mqtt/options.js";
import { subscriptionFilter } from "../../mqtt/protocol.js";
import { processorCommand } from "../../processor/index.js";

const PASSWORD_1 = "Pw-one,odd@chars";
const PASSWORD_2 = "Pw-two-zq81";
const NODE_LIST = `amqp://u:${PASSWORD_1}@h1:5672,amqp://u:${PASSWORD_2}@h2:5672/vh,amqps://u:${PASSWORD_2}@h3`;

describe("GATEWAY_SHARE_GROUP", () => {
  it("turns the gateway's subscription into $share/<group>/<TOPIC_PREFIX>/+/+", () => {
    expect(subscriptionFilter("sensors/+/+", undefined)).toBe("sensors/+/+");
    expect(subscriptionFilter("sensors/+/+", "gw")).toBe("$share/gw/sensors/+/+");
    const settings = resolveOptions({
      url: "mqtt://127.0.0.1:1883",
      clientId: "telemetry-gateway-a",
      topic: "sensors/+/+",
      shareGroup: "site-1",
      receiveMaximum: 1_000,
      keepaliveSeconds: 30,
      sessionExpirySeconds: 600,
      log: silentLogger(),
    });
    expect(settings.topic).toBe("$share/site-1/sensors/+/+");
  });

  it("refuses a share name MQTT 5 forbids, in the option and in the setting", () => {
    for (const bad of ["", "a/b", "a+", "#"])
      expect(() => subscriptionFilter("s/+/+", bad)).toThrow(RangeError);
    expect(() => parseConfig(gatewayCommand.spec, [], { GATEWAY_SHARE_GROUP: "a/b" })).toThrow(ConfigError);
    expect(() => parseConfig(gatewayCommand.spec, [], { GATEWAY_SHARE_GROUP: "a/b" })).toThrow(
      /GATEWAY_SHARE_GROUP/,
    );
    expect(parseConfig(gatewayCommand.spec, [], { GATEWAY_SHARE_GROUP: "gw" }).shareGroup).toBe("gw");
    expect(parseConfig(gatewayCommand.spec, [], {}).shareGroup).toBeUndefined();
  });
});

describe("AMQP_URL with a list of cluster nodes", () => {
  it("splits at a comma that starts the next URL, never inside a password", () => {
    expect(splitUrlList(NODE_LIST)).toEqual([
      `amqp://u:${PASSWORD_1}@h1:5672`,
      `amqp://u:${PASSWORD_2}@h2:5672/vh`,
      `amqps://u:${PASSWORD_2}@h3`,
    ]);
    expect(splitUrlList("amqp://h1:5672")).toEqual(["amqp://h1:5672"]);
  });

  it("is accepted by both services and printed with every password masked", () => {
    for (const command of [gatewayCommand, processorCommand]) {
      const config = parseConfig(command.spec, [], { AMQP_URL: NODE_LIST });
      expect(config.amqpUrl).toBe(NODE_LIST);
      const shown = JSON.stringify(effectiveConfig(command.spec, config));
      expect(shown).toContain("amqp://u:***@h1:5672,amqp://u:***@h2:5672/vh,amqps://u:***@h3");
      expect(shown).not.toContain(PASSWORD_1);
      expect(shown).not.toContain(PASSWORD_2);
    }
  });

  it("names the bad node of a list, passwords masked", () => {
    const attempt = () =>
      parseConfig(gatewayCommand.spec, [], {
        AMQP_URL: `amqp://u:${PASSWORD_2}@h1:5672,mqtt://u:${PASSWORD_2}@h2`,
      });
    expect(attempt).toThrow(/AMQP_URL.*node 2 of the list: must use amqp: or amqps:/);
    expect(attempt).not.toThrow(new RegExp(PASSWORD_2));
  });
});

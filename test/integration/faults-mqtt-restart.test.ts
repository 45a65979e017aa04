import mqtt from "mqtt";
import { describe, expect, it } from "vitest";
import {
  expectDeliveriesAccounted,
  expectStoredExactlyOnce,
  metric,
  report,
  startStream,
  until,
} from "../helpers/fault-stream.js";
import { privateBrokersPerFile, startPrivateBrokers } from "../helpers/private-pipeline.js";
import { untilReady } from "../helpers/services.js";

const READINGS = 6_000;
const SESSIONS_LOST = "telemetry_gateway_mqtt_sessions_lost_total";
const BROKER_DROPPED = "telemetry_gateway_mqtt_broker_dropped_total";
const RATE = 1_500;

describe("fault: the MQTT broker restarts mid-stream", () => {
  // persistence true: the gateway's session, its subscription and its queued messages survive the restart.
  const brokers = privateBrokersPerFile({ mosquitto: { maxQueued: 0, persistence: true } });

  it("the gateway and the simulator reconnect by themselves and every reading the simulator got a PUBACK for is stored once", async () => {
    await using run = await brokers().pipeline("fault-mqtt-restart");
    const { names } = run;
    const { mosquitto } = brokers();
    const { gateway: gw, processor: storing } = await run.start();
    const stream = startStream(names, { count: READINGS, rate: RATE, seed: 404 });
    await until("a quarter of the stream is stored", 20_000, async () => {
      return (await metric(storing.httpPort, "telemetry_processor_readings_stored_total")) >= READINGS / 4;
    });

    const pidBefore = mosquitto.pid;
    const ackedAtRestart = stream.acked();
    await mosquitto.restart();
    expect(mosquitto.pid).not.toBe(pidBefore);
    expect(ackedAtRestart, "the broker must restart mid-stream").toBeLessThan(READINGS);

    await until("the gateway is subscribed again", 30_000, async () => {
      return gw.logs.filter((l) => l.msg === "MQTT connected and subscribed").length >= 2;
    });
    expect(gw.logs.some((l) => l.msg === "MQTT connection lost; unacked messages will be redelivered")).toBe(
      true,
    );
    const resubscribed = gw.logs.filter((l) => l.msg === "MQTT connected and subscribed").at(-1);
    expect(resubscribed?.sessionPresent, "the broker kept the gateway's session across its restart").toBe(
      true,
    );
    expect(await metric(gw.httpPort, SESSIONS_LOST), "a kept session is not reported lost").toBe(0);
    expect(await metric(gw.httpPort, BROKER_DROPPED), "a broker without queue limits drops nothing").toBe(0);

    const counts = await expectStoredExactlyOnce(names, stream);
    const simulatorReconnected = stream.logs.some((l) =>
      /^reconnected to the MQTT broker/.test(String(l.msg)),
    );
    expect(simulatorReconnected, "the simulator reconnected by itself").toBe(true);
    expect(gw.proc.exitCode, "the gateway kept running").toBeNull();
    // Messages the gateway had published but not PUBACKed when the broker went are redelivered and published
    // again: the processor (which ran throughout, its AMQP side untouched) counts each second copy as a duplicate.
    const { duplicates } = await expectDeliveriesAccounted(storing, counts.stored);
    report("mosquitto restart mid-stream", { ...counts, duplicates, ackedAtRestart });
  });

  it("a broker that drops acknowledged messages (a session's queue full) is reported: a warning and telemetry_gateway_mqtt_broker_dropped_total", async () => {
    // Mosquitto as shipped (a session queue limit), reporting its $SYS counts every second.
    await using limited = await startPrivateBrokers({
      mosquitto: { maxQueued: 5, extraConfig: ["sys_interval 1"] },
    });
    await using run = await limited.pipeline("fault-mqtt-dropped");
    const n = run.names;
    const gw = await run.gateway();
    await untilReady(gw);
    // The gateway's first count (0, this broker's first publish within a second) is its starting point: the drops
    // must come after it to be counted.
    await until("the gateway watches the broker's dropped count", 10_000, async () =>
      gw.logs.some((l) => /^watching the MQTT broker's count of dropped messages/.test(String(l.msg))),
    );
    // Another subscriber's persistent session, offline: the broker queues 5 of the readings for it and drops the
    // rest, after PUBACKing every one to the simulator. The gateway's own session loses nothing here.
    const bystander = await mqtt.connectAsync(limited.mosquitto.url, {
      clientId: `bystander-${n.topicPrefix}`,
      clean: false,
      protocolVersion: 4,
    });
    await bystander.subscribeAsync(`${n.topicPrefix}/#`, { qos: 1 });
    await bystander.endAsync();
    const stream = startStream(n, { count: 50, rate: 500, seed: 808 });
    await stream.done;
    await until("the gateway saw the broker's dropped count rise", 15_000, async () => {
      return (await metric(gw.httpPort, BROKER_DROPPED)) >= 45;
    });
    expect(await metric(gw.httpPort, BROKER_DROPPED)).toBe(45);
    const warning = gw.logs.find((l) => /^the MQTT broker dropped messages/.test(String(l.msg)));
    expect(warning?.level, "logged as a warning").toBe(40);
    expect(gw.logs.some((l) => /reports messages it dropped since it started/.test(String(l.msg)))).toBe(
      false,
    );
  });

  it("a broker that comes back without the gateway's session (no persistence) is reported: a warning and telemetry_gateway_mqtt_sessions_lost_total", async () => {
    // A broker of its own: this one forgets every session when it restarts.
    await using forgetful = await startPrivateBrokers({ mosquitto: { maxQueued: 0, persistence: false } });
    await using run = await forgetful.pipeline("fault-mqtt-forgetful");
    const gw = await run.gateway();
    await untilReady(gw);
    const subscribed = () => gw.logs.filter((l) => l.msg === "MQTT connected and subscribed");
    // Log lines come through the child's stdout, which the test may read after /readyz answered.
    await until("the subscription is logged", 5_000, async () => subscribed().length >= 1);
    expect(subscribed()[0]?.sessionPresent, "a new GATEWAY_ID has no session yet").toBe(false);
    await until("the new session is logged", 5_000, async () =>
      gw.logs.some((l) => /^new MQTT session/.test(String(l.msg))),
    );
    expect(await metric(gw.httpPort, SESSIONS_LOST), "the first session of a process is not a loss").toBe(0);

    await forgetful.mosquitto.restart();
    await until("the gateway is subscribed again", 30_000, async () => subscribed().length >= 2);
    expect(subscribed().at(-1)?.sessionPresent, "the broker forgot the session").toBe(false);
    expect(await metric(gw.httpPort, SESSIONS_LOST)).toBe(1);
    const warning = gw.logs.find((l) => /^the MQTT broker had no session/.test(String(l.msg)));
    expect(warning?.level, "logged as a warning").toBe(40);
  });
});

import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it, vi } from "vitest";
import {
  capturedLog,
  cleanUpAfterEach,
  hang,
  MQTT_URL,
  newPublisher,
  openInput,
  privateBroker,
  publishAll,
  range,
  resume,
  sessions,
  startInput,
  startSilentServer,
  startTappedInput,
  startWireTap,
  uniqueName,
  untilConnected,
  WAIT,
  WARN,
  within,
} from "../helpers/mqtt-input-rig.js";

/** The MQTT input through broker faults: kills, refusals, silence, hangs, and a prompt stop() in every state. */
cleanUpAfterEach();

describe("MQTT input: broker faults and stop()", () => {
  it("reconnects by itself after the broker is killed and restarted, and receives what is published then", async () => {
    const broker = await privateBroker();
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const received: string[] = [];
    const input = await openInput(
      { url: broker.url, clientId: uniqueName("in"), topic, reconnectMinMs: 50, reconnectMaxMs: 200 },
      (msg) => {
        received.push(msg.item.payload.toString());
        msg.ack();
      },
    );
    sessions.pop(); // dies with the private broker
    const connected = vi.fn();
    const disconnected = vi.fn();
    input.on("connected", connected);
    input.on("disconnected", disconnected);
    await untilConnected(input);

    // Fault: SIGKILL, so the broker sends no DISCONNECT and the socket just closes.
    await broker.kill9();
    expect(connected).toHaveBeenCalledTimes(1);
    await vi.waitFor(() => expect(disconnected).toHaveBeenCalledTimes(1), WAIT);
    expect(disconnected.mock.calls[0]?.[0]).toBeInstanceOf(Error);
    expect(input.connected).toBe(false);
    // Keep the broker down for a few reconnect attempts.
    await sleep(300);

    await broker.restart();
    await vi.waitFor(() => expect(connected).toHaveBeenCalledTimes(2), WAIT);
    expect(connected).toHaveBeenLastCalledWith({ sessionPresent: false });
    expect(input.connected).toBe(true);

    const publisher = await newPublisher(broker.url);
    await publishAll(publisher, topic, ["after-restart"]);
    await vi.waitFor(() => expect(received).toEqual(["after-restart"]), WAIT);
  });

  it("keeps the connection up with keepalive 1 s while a message is held unacked for 3 s", async () => {
    const { tap, topic, received, input } = await startTappedInput({ keepaliveSeconds: 1 });
    const disconnected = vi.fn();
    input.on("disconnected", disconnected);
    const publisher = await newPublisher();

    await publishAll(publisher, topic, ["held"]);
    await vi.waitFor(() => expect(received).toHaveLength(1), WAIT);
    await sleep(3_000);

    expect(disconnected).not.toHaveBeenCalled();
    expect(input.connected).toBe(true);
    expect(tap.fromClient.filter((packet) => packet.cmd === "pingreq").length).toBeGreaterThanOrEqual(2);
    expect(tap.fromBroker.filter((packet) => packet.cmd === "pingresp").length).toBeGreaterThanOrEqual(2);
    received[0]?.ack();
    await vi.waitFor(() => expect(tap.pubacks()).toHaveLength(1), WAIT);
  });

  it("drops a connection whose PINGRESP does not come within the keepalive, and reconnects", async () => {
    const tap = await startWireTap(MQTT_URL);
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const input = await openInput(
      { url: tap.url, clientId: uniqueName("in"), topic, keepaliveSeconds: 1 },
      () => {},
    );
    const connected = vi.fn();
    const disconnected = vi.fn();
    input.on("connected", connected);
    input.on("disconnected", disconnected);
    await untilConnected(input);

    // Fault: the broker's packets stop arriving, but the socket stays open.
    tap.stall();
    await vi.waitFor(() => expect(disconnected).toHaveBeenCalledTimes(1), WAIT);
    expect(disconnected.mock.calls[0]?.[0]?.message).toMatch(/no PINGRESP within 1 s/);
    await vi.waitFor(() => expect(connected).toHaveBeenCalledTimes(2), WAIT);
    expect(input.connected).toBe(true);
  });

  it("reports the broker's reason in health() and the log, and retries, when the CONNACK refuses the connection", async () => {
    // Anonymous clients are refused, and we send no credentials.
    const broker = await privateBroker(["allow_anonymous false"]);
    const { log, lines } = capturedLog();
    const input = await openInput(
      { url: broker.url, clientId: uniqueName("in"), topic: "x/+/+", log },
      () => {},
    );
    sessions.pop(); // never created
    const failed = vi.fn();
    input.on("failed", failed);

    await vi.waitFor(() => expect(failed).toHaveBeenCalledTimes(2), WAIT);
    expect(input.health()).toEqual({
      ready: false,
      reason: expect.stringMatching(/refused the connection: reason 0x87 \(Not authorized\)/),
    });
    expect(input.connected).toBe(false);
    const warnings = lines.filter((line) => line.level === WARN).map((line) => String(line.msg));
    expect(warnings.slice(0, 2)).toEqual([
      expect.stringMatching(
        `^MQTT connection to 127.0.0.1:${broker.port} failed: broker refused the connection: reason 0x87 \\(Not authorized\\): check MQTT_USERNAME and MQTT_PASSWORD; retrying in \\d+ ms$`,
      ),
      expect.stringMatching(`^MQTT connection to 127.0.0.1:${broker.port} failed: .*Not authorized`),
    ]);
  });

  it("reports in health() and retries when the broker grants the subscription only at QoS 0", async () => {
    const broker = await privateBroker(["max_qos 0"]);
    const input = await openInput({ url: broker.url, clientId: uniqueName("in"), topic: "x/+/+" }, () => {});
    sessions.pop(); // dies with the private broker
    const failed = vi.fn();
    input.on("failed", failed);

    await vi.waitFor(() => expect(failed).toHaveBeenCalledTimes(2), WAIT);
    expect(input.health()).toEqual({
      ready: false,
      reason: expect.stringMatching(/subscription to "x\/\+\/\+" failed: the broker granted only QoS 0/),
    });
    expect(input.connected).toBe(false);
  });

  it("keeps retrying while nothing listens at the URL, logs each refusal, and connects once the broker is up", async () => {
    // Fault: the broker is down when the input starts (issue 18: the same as RabbitMQ, no exit).
    const broker = await privateBroker();
    await broker.kill9();
    const { log, lines } = capturedLog();
    const input = await openInput(
      { url: broker.url, clientId: uniqueName("in"), topic: "x/+/+", log },
      () => {},
    );
    sessions.pop(); // dies with the private broker
    const failed = vi.fn();
    input.on("failed", failed);
    expect(input.health()).toEqual({
      ready: false,
      reason: `mqtt not connected: connecting to ${broker.host}:${broker.port}`,
    });

    await vi.waitFor(() => expect(failed.mock.calls.length).toBeGreaterThanOrEqual(3), WAIT);
    expect(input.health()).toEqual({
      ready: false,
      reason: expect.stringContaining(
        `MQTT connection to 127.0.0.1:${broker.port} failed: connection refused`,
      ),
    });
    expect(input.connected).toBe(false);
    const refusals = lines.filter(
      (line) =>
        line.level === WARN &&
        String(line.msg).startsWith(`MQTT connection to 127.0.0.1:${broker.port} failed: connection refused`),
    );
    expect(refusals.length).toBe(failed.mock.calls.length);

    await broker.restart();
    await untilConnected(input);
    expect(input.health()).toEqual({ ready: true });
  });

  it("a connect attempt to a broker that accepts TCP but never answers times out and is retried", async () => {
    // Fault: what a hung broker looks like from outside; its kernel still completes the TCP handshake.
    const silent = await startSilentServer();
    const input = await openInput(
      { url: silent.url, clientId: uniqueName("in"), topic: "x/+/+", connectTimeoutMs: 300 },
      () => {},
    );
    sessions.pop(); // never created
    const failed = vi.fn();
    input.on("failed", failed);

    await vi.waitFor(() => expect(failed).toHaveBeenCalledTimes(2), WAIT);
    expect(failed.mock.calls[0]?.[0]?.message).toBe(
      `MQTT connection to 127.0.0.1:${silent.port} failed: no CONNACK within 300 ms`,
    );
    expect(silent.connections()).toBeGreaterThanOrEqual(2);
    expect(input.health()).toEqual({
      ready: false,
      reason: expect.stringMatching(/no CONNACK within 300 ms$/),
    });
  });

  describe("stop() ends promptly", () => {
    /** Far above what each state needs (at most CLOSE_TIMEOUT_MS, 2 s, for a broker that does not answer). */
    const PROMPT_MS = 5_000;

    it("while the first TCP connection is still being opened", async () => {
      const input = await openInput({ clientId: uniqueName("in"), topic: "x/+/+" }, () => {});
      sessions.pop(); // the stop comes before CONNECT is sent
      await within(input.stop(), PROMPT_MS, "stop()");
      expect(input.health()).toEqual({ ready: false, reason: "mqtt input stopped" });
      expect(input.connected).toBe(false);
    });

    it("while waiting to retry a broker that was never reached", async () => {
      const broker = await privateBroker();
      await broker.kill9();
      const input = await openInput(
        {
          url: broker.url,
          clientId: uniqueName("in"),
          topic: "x/+/+",
          reconnectMinMs: 600_000,
          reconnectMaxMs: 600_000,
        },
        () => {},
      );
      sessions.pop(); // never created
      const failed = vi.fn();
      input.on("failed", failed);
      await vi.waitFor(() => expect(failed).toHaveBeenCalledTimes(1), WAIT);
      await within(input.stop(), PROMPT_MS, "stop()");
      expect(input.health()).toEqual({ ready: false, reason: "mqtt input stopped" });
    });

    it("during the handshake with a broker that does not answer CONNECT", async () => {
      const silent = await startSilentServer();
      const input = await openInput(
        { url: silent.url, clientId: uniqueName("in"), topic: "x/+/+" },
        () => {},
      );
      sessions.pop(); // never created
      await vi.waitFor(() => expect(silent.bytesReceived()).toBeGreaterThan(0), WAIT);
      await within(input.stop(), PROMPT_MS, "stop()");
      expect(input.connected).toBe(false);
    });

    it("while connected to a broker that hangs (SIGSTOP) and never answers DISCONNECT", async () => {
      const broker = await privateBroker();
      const input = await startInput(
        { url: broker.url, clientId: uniqueName("in"), topic: "x/+/+" },
        () => {},
      );
      sessions.pop(); // dies with the private broker
      hang(broker);
      await within(input.stop(), PROMPT_MS, "stop()");
      expect(input.connected).toBe(false);
    });
  });

  it("a broker hung by SIGSTOP longer than the keepalive is noticed, and after SIGCONT every QoS 1 message published before and during the hang is delivered and acked", async () => {
    const KEEPALIVE_S = 5;
    const CONNECT_TIMEOUT_MS = 2_000;
    /** Each ack waits a little, so that some messages are in flight when the broker hangs. */
    const ACK_DELAY_MS = 50;
    const broker = await privateBroker();
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const clientId = uniqueName("in");
    const acked = new Set<string>();
    const options = {
      url: broker.url,
      clientId,
      topic,
      keepaliveSeconds: KEEPALIVE_S,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
      reconnectMinMs: 200,
      reconnectMaxMs: 1_000,
    };
    const input = await startInput(options, (d) => {
      setTimeout(() => {
        d.ack();
        acked.add(d.item.payload.toString());
      }, ACK_DELAY_MS);
    });
    sessions.pop(); // dies with the private broker
    const publisher = await newPublisher(broker.url);
    await publishAll(publisher, topic, range(0, 50));

    // Fault: the broker stops answering; its sockets stay open.
    const hungAt = hang(broker);
    const duringHang = publishAll(publisher, topic, range(50, 100));
    await vi.waitFor(() => expect(input.health().ready).toBe(false), {
      timeout: 2 * KEEPALIVE_S * 1_000,
      interval: 50,
    });
    const detectedMs = Date.now() - hungAt;
    expect(input.health()).toEqual({
      ready: false,
      reason: expect.stringMatching(
        `^mqtt not connected: MQTT connection to 127.0.0.1:${broker.port} lost: no PINGRESP within 5 s`,
      ),
    });
    // The reconnect attempts meet a kernel that accepts TCP for a broker that never answers CONNECT.
    await vi.waitFor(
      () =>
        expect(input.health()).toEqual({
          ready: false,
          reason: expect.stringMatching(/failed: no CONNACK within 2000 ms$/),
        }),
      { timeout: 20_000, interval: 50 },
    );
    const hungForMs = resume(broker);

    await duringHang;
    await vi.waitFor(() => expect(input.health()).toEqual({ ready: true }), {
      timeout: 20_000,
      interval: 50,
    });
    const recoveredMs = Date.now() - hungAt - hungForMs;
    await vi.waitFor(() => expect([...acked].sort()).toEqual(range(0, 100).sort()), {
      timeout: 20_000,
      interval: 50,
    });
    await vi.waitFor(() => expect(input.unacked).toBe(0), WAIT);

    // Nothing is left unacknowledged at the broker: a new session with the same client id gets only what is
    // published after this one ended (the broker resends unacknowledged messages first).
    await input.stop();
    await publishAll(publisher, topic, ["marker"]);
    const next: string[] = [];
    await startInput({ ...options, keepaliveSeconds: 30 }, (d) => {
      next.push(d.item.payload.toString());
      d.ack();
    });
    sessions.pop(); // dies with the private broker
    await vi.waitFor(() => expect(next).toContain("marker"), WAIT);
    expect(next).toEqual(["marker"]);
    console.log(
      `MQTT broker hung ${hungForMs} ms: not ready after ${detectedMs} ms (keepalive ${KEEPALIVE_S} s), ` +
        `ready again ${recoveredMs} ms after SIGCONT; 100 of 100 messages acked`,
    );
  });
});

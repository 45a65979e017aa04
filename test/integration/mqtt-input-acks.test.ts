import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it, vi } from "vitest";
import type { Delivery } from "../../common/pipeline.js";
import type { MqttMessage } from "../../mqtt/input.js";
import {
  cleanUpAfterEach,
  newPublisher,
  openInput,
  payloads,
  publishAll,
  publishIds,
  QUIET_MS,
  range,
  startInput,
  startTappedInput,
  uniqueName,
  untilConnected,
  WAIT,
} from "../helpers/mqtt-input-rig.js";

/** The MQTT input acknowledges what it was handed only when told, in order, within its window, across sessions. */
cleanUpAfterEach();

describe("MQTT input: acknowledgements, window and session", () => {
  it("a QoS 1 message is PUBACKed only once ack() is called", async () => {
    const { tap, topic, received, input } = await startTappedInput();
    const publisher = await newPublisher();

    await publishAll(publisher, topic, ['{"value":1}']);
    await vi.waitFor(() => expect(received).toHaveLength(1), WAIT);
    const [msg] = received;
    expect(msg?.item.topic).toBe(topic);
    expect(msg?.item.qos).toBe(1);
    expect(msg?.item.payload.toString()).toBe('{"value":1}');
    expect(msg?.item.receivedAt).toBeGreaterThan(Date.now() - 5_000);

    await sleep(QUIET_MS);
    expect(tap.pubacks()).toEqual([]);
    expect(input.unacked).toBe(1);

    msg?.ack();
    await vi.waitFor(() => expect(tap.pubacks()).toEqual(publishIds(tap)), WAIT);
    expect(input.unacked).toBe(0);
    msg?.ack();
    await sleep(QUIET_MS);
    expect(tap.pubacks()).toHaveLength(1);
  });

  it("PUBACKs go out in arrival order when ack() is called in reverse order", async () => {
    const { tap, topic, received, input } = await startTappedInput();
    const publisher = await newPublisher();

    await publishAll(publisher, topic, range(0, 5));
    await vi.waitFor(() => expect(received).toHaveLength(5), WAIT);
    expect(payloads(received)).toEqual(range(0, 5));

    for (const msg of received.slice(1).reverse()) msg.ack();
    await sleep(QUIET_MS);
    expect(tap.pubacks()).toEqual([]);
    expect(input.unacked).toBe(5);

    received[0]?.ack();
    await vi.waitFor(() => expect(tap.pubacks()).toHaveLength(5), WAIT);
    expect(tap.pubacks()).toEqual(publishIds(tap));
    expect(input.unacked).toBe(0);
  });

  it("with receiveMaximum 100 the broker sends 100 messages before any ack, and never more than 100 are unacked", async () => {
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const received: Delivery<MqttMessage>[] = [];
    let acking = false;
    let outstanding = 0;
    let maxOutstanding = 0;
    const input = await startInput({ clientId: uniqueName("in"), topic, receiveMaximum: 100 }, (msg) => {
      received.push(msg);
      maxOutstanding = Math.max(maxOutstanding, ++outstanding);
      if (acking) {
        outstanding--;
        msg.ack();
      }
    });
    const publisher = await newPublisher();

    await publishAll(publisher, topic, range(0, 300));
    await vi.waitFor(() => expect(received).toHaveLength(100), WAIT);
    await sleep(QUIET_MS);
    expect(received).toHaveLength(100);
    expect(input.unacked).toBe(100);

    acking = true;
    for (const msg of received.slice()) {
      outstanding--;
      msg.ack();
    }
    await vi.waitFor(() => expect(received).toHaveLength(300), WAIT);
    expect(payloads(received)).toEqual(range(0, 300));
    expect(maxOutstanding).toBe(100);
    await vi.waitFor(() => expect(input.unacked).toBe(0), WAIT);
  });

  it("holds back what the broker sends beyond Receive Maximum and hands it on in order as acks free the window", async () => {
    // Mosquitto 2.0 overshoots Receive Maximum when it has a backlog and PUBACKs come in order.
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const received: string[] = [];
    let outstanding = 0;
    let maxOutstanding = 0;
    const input = await startInput({ clientId: uniqueName("in"), topic, receiveMaximum: 10 }, (msg) => {
      received.push(msg.item.payload.toString());
      maxOutstanding = Math.max(maxOutstanding, ++outstanding);
      setTimeout(() => {
        outstanding--;
        msg.ack();
      }, 1);
    });
    const publisher = await newPublisher();

    await publishAll(publisher, topic, range(0, 500));
    await vi.waitFor(() => expect(received).toHaveLength(500), WAIT);
    expect(received).toEqual(range(0, 500));
    expect(maxOutstanding).toBeLessThanOrEqual(10);
    await vi.waitFor(() => expect(input.unacked).toBe(0), WAIT);
  });

  it("keeps the session across stop(): unacked and newly published messages arrive on the next start", async () => {
    const topic = `${uniqueName("t")}/dev-1/temp`;
    const clientId = uniqueName("in");
    const firstReceived: Delivery<MqttMessage>[] = [];
    const first = await startInput({ clientId, topic }, (msg) => firstReceived.push(msg));
    const publisher = await newPublisher();

    await publishAll(publisher, topic, range(0, 5));
    await vi.waitFor(() => expect(firstReceived).toHaveLength(5), WAIT);
    firstReceived[0]?.ack();
    firstReceived[1]?.ack();
    const disconnected = vi.fn();
    first.on("disconnected", disconnected);
    await first.stop();
    expect(first.connected).toBe(false);
    expect(disconnected).toHaveBeenCalledWith(undefined);
    // An ack after the connection is gone is a no-op; the broker redelivers instead.
    firstReceived[2]?.ack();

    await publishAll(publisher, topic, range(5, 10));

    const secondReceived: string[] = [];
    const second = await openInput({ clientId, topic }, (msg) => {
      secondReceived.push(msg.item.payload.toString());
      msg.ack();
    });
    const connected = vi.fn();
    second.on("connected", connected);
    await untilConnected(second);
    expect(connected).toHaveBeenCalledWith({ sessionPresent: true });
    await vi.waitFor(() => expect(new Set(secondReceived)).toEqual(new Set(range(2, 10))), WAIT);
    // m0 and m1 were PUBACKed before DISCONNECT, so the broker does not send them again.
    expect(secondReceived).not.toContain("m0");
    expect(secondReceived).not.toContain("m1");
  });

  it("an ack() from a connection that is gone writes no PUBACK on the next connection", async () => {
    const { tap, topic, received, input } = await startTappedInput();
    const connected = vi.fn();
    input.on("connected", connected);
    const publisher = await newPublisher();

    await publishAll(publisher, topic, ["m0"]);
    await vi.waitFor(() => expect(received).toHaveLength(1), WAIT);

    // Fault: the network drops the connection while the message is unacked.
    tap.cut();
    await vi.waitFor(() => expect(connected).toHaveBeenCalledWith({ sessionPresent: true }), WAIT);
    await vi.waitFor(() => expect(received).toHaveLength(2), WAIT);
    expect(payloads(received)).toEqual(["m0", "m0"]);

    received[0]?.ack();
    await sleep(QUIET_MS);
    expect(tap.pubacks()).toEqual([]);
    expect(input.unacked).toBe(1);

    received[1]?.ack();
    await vi.waitFor(() => expect(tap.pubacks()).toHaveLength(1), WAIT);
    expect(input.unacked).toBe(0);
  });
});

import mqtt from "mqtt";

/** Ends a persistent session left on a broker: a clean start with no expiry, then a disconnect. */
export async function endMqttSession(url: string, clientId: string): Promise<void> {
  const client = await mqtt.connectAsync(url, {
    clientId,
    protocolVersion: 5,
    clean: true,
    properties: { sessionExpiryInterval: 0 },
    reconnectPeriod: 0,
  });
  await client.endAsync();
}

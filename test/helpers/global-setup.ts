import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    amqpUrl: string;
    mqttUrl: string;
    databaseUrl: string;
  }
}

const LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672";
const LOCAL_MQTT = "mqtt://127.0.0.1:1883";
const LOCAL_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres";

/**
 * Brokers for the integration tests: AMQP_URL and MQTT_URL when set; otherwise, where a Docker engine answers,
 * RabbitMQ and Mosquitto started with testcontainers; otherwise the local brokers on their standard ports.
 */
export default async function setup(project: TestProject) {
  // PostgreSQL: DATABASE_URL (a database tests may create theirs from) or the local server. Removed from the
  // environment so services the tests spawn use the store each test gives them, SQLite unless it says otherwise.
  project.provide("databaseUrl", process.env.DATABASE_URL || LOCAL_POSTGRES);
  delete process.env.DATABASE_URL;
  const fromEnv = { amqp: process.env.AMQP_URL, mqtt: process.env.MQTT_URL };
  if (fromEnv.amqp && fromEnv.mqtt) {
    project.provide("amqpUrl", fromEnv.amqp);
    project.provide("mqttUrl", fromEnv.mqtt);
    return;
  }
  const containers = await startContainers().catch(() => undefined);
  project.provide("amqpUrl", fromEnv.amqp ?? containers?.amqpUrl ?? LOCAL_AMQP);
  project.provide("mqttUrl", fromEnv.mqtt ?? containers?.mqttUrl ?? LOCAL_MQTT);
  return async () => {
    await containers?.stop();
  };
}

async function startContainers() {
  const { GenericContainer, getContainerRuntimeClient, Wait } = await import("testcontainers");
  const { RabbitMQContainer } = await import("@testcontainers/rabbitmq");
  await getContainerRuntimeClient();
  const mosquittoConf = "listener 1883 0.0.0.0\nallow_anonymous true\nmax_queued_messages 0\n";
  const [rabbit, mosquitto] = await Promise.all([
    new RabbitMQContainer("rabbitmq:3.13-alpine").start(),
    new GenericContainer("eclipse-mosquitto:2")
      .withCopyContentToContainer([{ content: mosquittoConf, target: "/mosquitto/config/mosquitto.conf" }])
      .withExposedPorts(1883)
      .withWaitStrategy(Wait.forListeningPorts())
      .start(),
  ]);
  return {
    amqpUrl: rabbit.getAmqpUrl(),
    mqttUrl: `mqtt://${mosquitto.getHost()}:${mosquitto.getMappedPort(1883)}`,
    async stop() {
      await Promise.all([rabbit.stop(), mosquitto.stop()]);
    },
  };
}

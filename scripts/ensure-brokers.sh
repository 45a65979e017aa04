#!/usr/bin/env bash
# Makes sure the local RabbitMQ (127.0.0.1:5672), Mosquitto (127.0.0.1:1883) and PostgreSQL (127.0.0.1:5432) are up,
# starting them if not.
# Used by .ci/run and `npm run demo` on the project's machines (Debian packages rabbitmq-server and mosquitto).
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 what=$2 seconds=${3:-60}
  for _ in $(seq 1 "$seconds"); do
    port_open "$port" && return 0
    sleep 1
  done
  echo "ensure-brokers: $what did not open 127.0.0.1:$port within $seconds s" >&2
  return 1
}

if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null || { echo "ensure-brokers: RabbitMQ is not running and not installed (apt-get install rabbitmq-server)" >&2; exit 1; }
  echo "ensure-brokers: starting RabbitMQ"
  rabbitmq-server -detached
  # await_startup fails at once while the node is not up yet, so wait for the listener first.
  wait_port 5672 RabbitMQ 120
  rabbitmqctl await_startup --timeout 120 >/dev/null
fi

if ! port_open 1883; then
  command -v mosquitto >/dev/null || { echo "ensure-brokers: Mosquitto is not running and not installed (apt-get install mosquitto)" >&2; exit 1; }
  echo "ensure-brokers: starting Mosquitto"
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
  wait_port 1883 Mosquitto
fi
if ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "ensure-brokers: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
    wait_port 5432 PostgreSQL
  else
    echo "ensure-brokers: PostgreSQL is not running on 127.0.0.1:5432 (the PostgreSQL store's tests need it)" >&2
  fi
fi
postgres="and PostgreSQL on 127.0.0.1:5432 are up"
port_open 5432 || postgres="are up; PostgreSQL is not"
echo "ensure-brokers: RabbitMQ on 127.0.0.1:5672, Mosquitto on 127.0.0.1:1883 $postgres"

#!/bin/sh
# Makes the secrets docker-compose.yml reads, once, before the first `docker compose up` (README, "Run it with
# Docker"): random passwords for RabbitMQ's user `telemetry` and the MQTT users `gateway` and `simulator`, Mosquitto's
# password file, and the dashboard's token. Usage: deploy/make-secrets.sh [DIR] (default ./secrets).
# Never overwrites: to rotate, edit a file, or move the folder away and run it again (then RabbitMQ's volume
# still holds the old user: change its password with rabbitmqctl change_password).
set -eu
dir=${1:-secrets}
if [ -e "$dir/amqp_url" ]; then
  echo "make-secrets: $dir already holds secrets; nothing changed" >&2
  exit 1
fi
mkdir -p "$dir"
# The folder is the owner's alone; the files inside are readable, since the containers' users (rabbitmq,
# mosquitto, node) differ from the host user that owns them.
chmod 700 "$dir"
rand() { openssl rand -hex 24; }
amqp=$(rand)
gateway=$(rand)
simulator=$(rand)
printf 'amqp://telemetry:%s@rabbitmq:5672\n' "$amqp" >"$dir/amqp_url"
# docker-compose.cluster.yml: every node of the cluster.
printf 'amqp://telemetry:%s@rabbitmq-%s:5672,' "$amqp" 1 "$amqp" 2 "$amqp" 3 | sed 's/,$/\n/' >"$dir/amqp_url_cluster"
# RabbitMQ creates this user instead of guest on its first start (an empty volume).
printf 'default_user = telemetry\ndefault_pass = %s\n' "$amqp" >"$dir/rabbitmq.conf"
printf '%s\n' "$gateway" >"$dir/mqtt_gateway_password"
printf '%s\n' "$simulator" >"$dir/mqtt_simulator_password"
rand >"$dir/serve_token"
: >"$dir/mosquitto_passwd"
if command -v mosquitto_passwd >/dev/null 2>&1; then
  mosquitto_passwd -b "$dir/mosquitto_passwd" gateway "$gateway"
  mosquitto_passwd -b "$dir/mosquitto_passwd" simulator "$simulator"
else
  docker run --rm -v "$(cd "$dir" && pwd):/s" eclipse-mosquitto:2 sh -c \
    'mosquitto_passwd -b /s/mosquitto_passwd gateway "$1" && mosquitto_passwd -b /s/mosquitto_passwd simulator "$2"' \
    sh "$gateway" "$simulator"
fi
chmod 644 "$dir"/*
echo "make-secrets: wrote $dir (the dashboard's token is in $dir/serve_token)"

#!/usr/bin/env bash
# The first step of `npm test`: installs from Debian's packages what the test suite uses and a fresh machine may lack
# (Chromium for the dashboard test, iptables for the network-cut tests, promtool for the alert rules,
# docker-compose to validate the compose files, the Mosquitto C clients for the benchmark's baseline, openssl for
# the TLS certificates, systemd-analyze for the unit files), then makes sure RabbitMQ, Mosquitto and PostgreSQL run.
# Installs only what is missing, so on a machine that has everything it costs nothing.
set -euo pipefail

declare -A package_of=(
  [chromium]=chromium
  [iptables]=iptables
  [promtool]=prometheus
  [docker-compose]=docker-compose
  [mosquitto_pub]=mosquitto-clients
  [openssl]=openssl
  [ip]=iproute2
  [systemd-analyze]=systemd
)
missing=()
for tool in "${!package_of[@]}"; do
  command -v "$tool" >/dev/null || missing+=("${package_of[$tool]}")
done
if ((${#missing[@]} > 0)); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ensure-test-env: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "ensure-test-env: missing ${missing[*]}: install them (Debian: apt-get install ${missing[*]}); tests that need them fail saying so" >&2
  fi
fi
bash "$(dirname "$0")/ensure-brokers.sh"

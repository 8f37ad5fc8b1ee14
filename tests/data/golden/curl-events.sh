#!/bin/sh
# 2 Docker Engine API requests re-issued with curl (docktap export --format curl).
# Recorded from: sh -c 'docker events --since 1 --until $(date +%s) --filter type=container'
# Recorded at 2026-11-27T22:21:09.140Z against unix:///tmp/dt-q7ua6hsm/docker.sock
#
# Usage: DOCKER_SOCK=/var/run/docker.sock sh THIS-SCRIPT
# Each request prints one line: CONN.SEQ OPERATION RECORDED-STATUS STATUS-NOW
# (STATUS-NOW is 000 when curl could not reach the daemon, 'skipped' when the request
# cannot be sent again: the comment above it says why). DOCKTAP_MAX_TIME (default 60)
# caps the seconds each request may take. This changes the daemon's state the way the
# recorded client did.

# 1.1 SystemPingHead
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o /dev/null \
  -w '1.1 SystemPingHead 200 %{http_code}\n' \
  -I \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  'http://docker/_ping'

# 1.2 SystemEvents
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o /dev/null \
  -w '1.2 SystemEvents 200 %{http_code}\n' \
  -X 'GET' \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  'http://docker/v1.41/events?filters=%7B%22type%22%3A%7B%22container%22%3Atrue%7D%7D&since=1&until=1795818069'

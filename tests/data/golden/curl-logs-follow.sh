#!/bin/sh
# 3 Docker Engine API requests re-issued with curl (docktap export --format curl).
# Recorded from: sh -c 'docker logs -f talker'
# Recorded at 2026-11-27T22:21:07.850Z against unix:///tmp/dt-q7ua6hsm/docker.sock
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

# 1.2 ContainerInspect
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o /dev/null \
  -w '1.2 ContainerInspect 200 %{http_code}\n' \
  -X 'GET' \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  'http://docker/v1.41/containers/talker/json'

# 1.3 ContainerLogs
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o /dev/null \
  -w '1.3 ContainerLogs 200 %{http_code}\n' \
  -X 'GET' \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  'http://docker/v1.41/containers/bd03cafcce9f8351a071651c7743e903144177b0269dc80d34fcb6657c8c2b75/logs?follow=1&stderr=1&stdout=1&tail=all'

#!/bin/sh
# 2 Docker Engine API requests re-issued with curl (docktap export --format curl).
# Recorded from: sh -c 'docker pull 127.0.0.1:9/nothing:latest'
# Recorded at 2026-11-27T22:21:11.115Z against unix:///tmp/dt-q7ua6hsm/docker.sock
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

# 1.2 ImageCreate
# X-Registry-Auth holds credentials docktap masked: put real ones in to authenticate
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o /dev/null \
  -w '1.2 ImageCreate 500 %{http_code}\n' \
  -X 'POST' \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  -H 'X-Registry-Auth: e30=' \
  'http://docker/v1.41/images/create?fromImage=127.0.0.1%3A9%2Fnothing&tag=latest'

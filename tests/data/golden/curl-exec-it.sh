#!/bin/sh
# 5 Docker Engine API requests re-issued with curl (docktap export --format curl).
# Recorded from: sh -c 'docker exec -it sleeper sh -c '"'"'echo in-exec'"'"''
# Recorded at 2026-11-27T22:21:07.023Z against unix:///tmp/dt-q7ua6hsm/docker.sock
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
  'http://docker/v1.41/containers/sleeper/json'

# 1.3 ContainerExec
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o /dev/null \
  -w '1.3 ContainerExec 201 %{http_code}\n' \
  -X 'POST' \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  -H 'Content-Type: application/json' \
  --data-binary @- \
  'http://docker/v1.41/containers/sleeper/exec' <<'DOCKTAP_BODY'
{"User":"","Privileged":false,"Tty":true,"AttachStdin":true,"AttachStderr":true,"AttachStdout":true,"Detach":false,"DetachKeys":"","Env":null,"WorkingDir":"","Cmd":["sh","-c","echo in-exec"]}
DOCKTAP_BODY

# 2.1 ExecStart
# skipped: the daemon hijacked this connection (tcp) for a raw stream, which curl cannot carry
#   POST /v1.41/exec/0cd8e1ba2d15f95b76c48fb9f1473c15790e20698a64439ecdf25639c99df2bf/start
echo '2.1 ExecStart 101 skipped'

# 1.4 ExecInspect
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o /dev/null \
  -w '1.4 ExecInspect 200 %{http_code}\n' \
  -X 'GET' \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  'http://docker/v1.41/exec/0cd8e1ba2d15f95b76c48fb9f1473c15790e20698a64439ecdf25639c99df2bf/json'

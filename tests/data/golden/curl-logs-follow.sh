#!/bin/sh
# 3 Docker Engine API requests re-issued with curl (docktap export --format curl).
# Recorded from: sh -c 'docker logs -f talker'
# Recorded at 2026-11-27T22:21:07.850Z against unix:///tmp/dt-q7ua6hsm/docker.sock
#
# Usage: DOCKER_SOCK=/var/run/docker.sock sh THIS-SCRIPT
# Each request prints one line: #N OPERATION RECORDED-STATUS STATUS-NOW, where #N is
# the exchange number `docktap show` prints (STATUS-NOW is 000 when curl could not
# reach the daemon, 'skipped' when the request cannot be sent again: the comment above
# it says why). The script stops with status 1 at the first status other than the
# recorded one. DOCKTAP_MAX_TIME (default 60) caps the seconds each request may take.
# Ids the daemon made up are read from its answers into ID_N variables. This changes
# the daemon's state the way the recorded client did.

# The directory for the statuses curl got, and the answers the ids are read from.
answers=$(mktemp -d) || exit 1
trap 'rm -rf "$answers"' EXIT
fail() { echo "$1" >&2; exit 1; }
# check N OPERATION RECORDED EXIT [endless]: print the status line; stop unless the
# status is the recorded one (--- when the capture has none) and curl (its EXIT status)
# got the whole answer, or only DOCKTAP_MAX_TIME ended it (28) and the client had ended
# it in the capture (endless)
check() {
  now=$(cat "$answers/$1" 2>/dev/null)
  echo "#$1 $2 $3 ${now:-000}"
  [ "$3" = --- ] || [ "${now:-000}" = "$3" ] ||
    fail "#$1 $2: the daemon answered ${now:-000} where the capture has $3"
  case "$4.$5" in
  0.* | 28.endless) ;;
  28.*) fail "#$1 $2: the answer did not end within DOCKTAP_MAX_TIME's ${DOCKTAP_MAX_TIME:-60} s, where the daemon ended it in the capture" ;;
  *) fail "#$1 $2: curl failed (exit status $4) before the answer ended" ;;
  esac
}
# head N PID: wait for the head of the answer to exchange N, or for its curl to end
head_of() {
  while [ ! -s "$answers/$1.head" ] && kill -0 "$2" 2>/dev/null; do sleep 0.1; done
}

# exchange #1: SystemPingHead
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o /dev/null \
  -w '%{http_code}' \
  -I \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  'http://docker/_ping' >"$answers"/1
check 1 'SystemPingHead' '200' $?

# exchange #2: ContainerInspect
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o /dev/null \
  -w '%{http_code}' \
  -X 'GET' \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  'http://docker/v1.41/containers/talker/json' >"$answers"/2
check 2 'ContainerInspect' '200' $?

# exchange #3: ContainerLogs
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o /dev/null \
  -w '%{http_code}' \
  -X 'GET' \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  'http://docker/v1.41/containers/bd03cafcce9f8351a071651c7743e903144177b0269dc80d34fcb6657c8c2b75/logs?follow=1&stderr=1&stdout=1&tail=all' >"$answers"/3
check 3 'ContainerLogs' '200' $?

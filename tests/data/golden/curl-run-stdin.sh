#!/bin/sh
# 5 Docker Engine API requests re-issued with curl (docktap export --format curl).
# Recorded from: sh -c 'docker run --rm --network none -i bb cat'
# Recorded at 2026-11-27T22:21:04.905Z against unix:///tmp/dt-q7ua6hsm/docker.sock
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

# exchange #2: ContainerCreate
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o "$answers"/2.body \
  -w '%{http_code}' \
  -X 'POST' \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  -H 'Content-Type: application/json' \
  --data-binary @- \
  'http://docker/v1.41/containers/create' <<'DOCKTAP_BODY' >"$answers"/2
{"Hostname":"","Domainname":"","User":"","AttachStdin":true,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":true,"StdinOnce":true,"Env":null,"Cmd":["cat"],"Image":"bb","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"none","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":true,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":0,"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},"NetworkingConfig":{"EndpointsConfig":{}}}
DOCKTAP_BODY
check 2 'ContainerCreate' '201' $?
ID_2=$(sed -n 's/.*"Id" *: *"\([^"]*\)".*/\1/p' "$answers"/2.body | head -n 1)
[ -n "$ID_2" ] || fail '#2 ContainerCreate: no Id in the answer'

# exchange #3: ContainerAttach
# skipped: the daemon hijacked this connection (tcp) for a raw stream, which curl cannot carry; the 17 bytes the client sent on it (stdin) are not sent, nor their end: a container reading its stdin waits for them until DOCKTAP_MAX_TIME ends what waits for the container
#   POST /v1.41/containers/0c518e87fd5102288b5ca74dcf1cc9d8fb95d7b4da659c61519812673732c8e5/attach?stderr=1&stdin=1&stdout=1&stream=1
echo '#3 ContainerAttach 101 skipped'
echo '#3 ContainerAttach: the 17 bytes the client sent on it (stdin) are not sent, nor their end: a container reading its stdin waits for them until DOCKTAP_MAX_TIME ends what waits for the container' >&2

# exchange #4: ContainerWait
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o /dev/null \
  -w '%{http_code}' \
  -D "$answers"/4.head \
  -X 'POST' \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  'http://docker/v1.41/containers/'"${ID_2}"'/wait?condition=removed' >"$answers"/4 &
pid_4=$!
head_of 4 "$pid_4"

# exchange #5: ContainerStart
curl -sS --globoff --path-as-is \
  --unix-socket "${DOCKER_SOCK:-/var/run/docker.sock}" \
  --max-time "${DOCKTAP_MAX_TIME:-60}" \
  -o /dev/null \
  -w '%{http_code}' \
  -X 'POST' \
  -H 'User-Agent: Docker-Client/28.2.2 (linux)' \
  'http://docker/v1.41/containers/'"${ID_2}"'/start' >"$answers"/5
check 5 'ContainerStart' '204' $?

wait "$pid_4"
check 4 'ContainerWait' '200' $?

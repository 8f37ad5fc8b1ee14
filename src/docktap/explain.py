"""One-line explanations of Engine API operations, for people reading a capture.

A capture names each exchange with its operationId (`ContainerWait`, `ExecStart`, ...), which
tells a Docker developer everything and a newcomer very little. The reports (`docktap export
--format markdown`) add a short sentence saying what the call does and why a client makes it.
The sentences are ours, written for this table; operations without one simply get none.
"""

from __future__ import annotations

EXPLANATIONS: dict[str, str] = {
    # System
    "SystemPing": "checks that the daemon is up; the answer headers also tell the API version.",
    "SystemPingHead": (
        "checks that the daemon is up, like GET /_ping but without a body; clients send it "
        "first to learn which API version to speak."
    ),
    "SystemVersion": "asks the daemon for its version, API version range, OS and architecture.",
    "SystemInfo": (
        "asks for daemon-wide facts: counts of containers and images, storage driver, "
        "runtimes, swarm state (`docker info`)."
    ),
    "SystemEvents": (
        "subscribes to the daemon's event feed; the answer is an open-ended stream of JSON "
        "objects, one per event, until the client hangs up or `until` is reached."
    ),
    "SystemAuth": (
        "checks registry credentials for `docker login`; the daemon may answer with an "
        "identity token to use instead of the password."
    ),
    "SystemDataUsage": (
        "reports how much disk images, containers, volumes and build cache use (`docker "
        "system df`)."
    ),
    # Containers
    "ContainerList": "lists containers, only running ones unless `all=1` (`docker ps`).",
    "ContainerCreate": (
        "creates a container from an image and a config, without starting it; the answer "
        "holds the new container's id."
    ),
    "ContainerInspect": "reads the full state and configuration of one container.",
    "ContainerStart": "starts a created or stopped container; the answer is an empty 204.",
    "ContainerStop": (
        "asks a container to stop: its main process gets the stop signal, then SIGKILL "
        "after the timeout."
    ),
    "ContainerRestart": "stops a container and starts it again.",
    "ContainerKill": "sends a signal to the container's main process (SIGKILL unless told).",
    "ContainerWait": (
        "waits until the container reaches the asked condition (stopped, removed) and then "
        "answers with its exit code; a long poll that can stay open for minutes."
    ),
    "ContainerAttach": (
        "hooks the client up to the container's stdin, stdout and stderr; the connection is "
        "hijacked and turns into a raw byte stream."
    ),
    "ContainerLogs": (
        "fetches what the container wrote; with `follow=1` the answer keeps streaming until "
        "the container stops. Without a TTY, stdout and stderr come framed."
    ),
    "ContainerDelete": "removes a container (`docker rm`); `force=1` kills it first if running.",
    "ContainerExec": (
        "prepares a command to run inside a running container and returns an exec id; "
        "nothing runs until ExecStart."
    ),
    "ContainerResize": "tells the daemon the client's terminal size, for a container with a TTY.",
    "ContainerArchive": (
        "downloads a file or folder from the container as a tar archive (`docker cp` out)."
    ),
    "ContainerArchiveInfo": (
        "checks a path inside the container; the answer header describes it, with no body "
        "(`docker cp` looks before it copies)."
    ),
    "PutContainerArchive": (
        "uploads a tar archive and unpacks it at a path in the container (`docker cp` in)."
    ),
    "ContainerStats": (
        "reports CPU, memory, network and block I/O use; streams a new sample every second "
        "unless `stream=0`."
    ),
    "ContainerTop": "lists the processes running inside a container (`docker top`).",
    "ContainerPrune": "removes every stopped container and reports the space freed.",
    "ContainerPause": "freezes all processes of a container.",
    "ContainerUnpause": "thaws a paused container.",
    "ContainerRename": "gives a container a new name.",
    "ContainerUpdate": "changes resource limits or the restart policy of a container.",
    "ContainerChanges": "lists files added, changed or deleted in the container's filesystem.",
    "ContainerExport": "downloads the container's whole filesystem as a tar archive.",
    # Exec
    "ExecStart": (
        "runs a prepared exec; when attached, the connection is hijacked and carries the "
        "command's input and output."
    ),
    "ExecInspect": "reads the state of an exec, including its exit code once it finished.",
    "ExecResize": "tells the daemon the client's terminal size for an exec with a TTY.",
    # Images
    "ImageList": "lists the images stored by the daemon (`docker images`).",
    "ImageCreate": (
        "pulls an image from a registry (or imports one); progress comes back as a stream of "
        "JSON messages, and errors may arrive inside that stream."
    ),
    "ImageInspect": "reads the configuration and metadata of one image.",
    "ImageDelete": "removes an image or untags it (`docker rmi`).",
    "ImageTag": "gives an existing image another name.",
    "ImagePush": "uploads an image to a registry, reporting progress as a JSON stream.",
    "ImageBuild": (
        "builds an image from a build context sent as a tar archive in the request body; "
        "build output comes back as a JSON stream."
    ),
    "ImageGet": "exports one image (or repository) as a tar archive (`docker save`).",
    "ImageGetAll": "exports several images as a single tar archive (`docker save a b`).",
    "ImageLoad": "imports images from a tar archive sent in the body (`docker load`).",
    "ImageHistory": "lists the layers of an image and the steps that made them.",
    "ImagePrune": "removes unused (dangling) images and reports the space freed.",
    "ImageSearch": "searches Docker Hub for images (`docker search`).",
    "ImageCommit": "creates a new image from a container's current filesystem.",
    "BuildPrune": "clears the build cache.",
    # Volumes
    "VolumeCreate": "creates a named volume, or returns the existing one of that name.",
    "VolumeList": "lists volumes (`docker volume ls`).",
    "VolumeInspect": "reads the details of one volume.",
    "VolumeDelete": "removes a volume; it fails while a container uses it.",
    "VolumePrune": "removes unused volumes and reports the space freed.",
    # Networks
    "NetworkCreate": "creates a network; the answer holds its id.",
    "NetworkList": "lists networks (`docker network ls`).",
    "NetworkInspect": "reads the details of one network, including attached containers.",
    "NetworkDelete": "removes a network.",
    "NetworkConnect": "attaches a container to a network.",
    "NetworkDisconnect": "detaches a container from a network.",
    "NetworkPrune": "removes networks no container uses.",
    # Other
    "DistributionInspect": (
        "asks the registry, through the daemon, for an image's manifest digest and platforms."
    ),
    "Session": (
        "opens a long-lived channel BuildKit uses to ask the client for files and secrets "
        "during a build; the connection is hijacked to HTTP/2 (h2c)."
    ),
}


def explain(operation: str) -> str | None:
    """A one-line explanation of an Engine API operation, or None when there is none."""
    return EXPLANATIONS.get(operation)

"""A request body as dockerd sees it: decoded into the operation's API types, as Go does.

Everything in docktap that judges a body (the audit, the redactor, replay matching) reads it
through `decode`, never through a Python dict of the raw JSON: a client that writes
`"hostconfig"`, repeats a key, or relies on a field dockerd still reads outside the spec would
otherwise make the daemon do one thing while docktap reads another.

The types come from the Engine API spec (the generated `schema_table`), corrected where the Go
types of dockerd 20.10, the daemon docktap is tested against, differ from the spec:

- `Cmd`, `Entrypoint` and `Shell` are a `strslice.StrSlice`, which takes a string as well as an
  array of strings: `"Cmd": "id"` is `["id"]`.
- The create body is decoded into a wrapper that also embeds a whole second, deprecated
  `HostConfig` at the top level: `{"Image": "bb", "Privileged": true}` is a privileged
  container. When the body has a `HostConfig` too, that one is used, and only `Memory`,
  `MemorySwap`, `CpuShares` and `CpusetCpus` (and the deprecated `Cpuset`) carry over from the
  top level, where the inner one leaves them unset.
- Some fields dockerd 20.10 reads are no longer in the spec (`KernelMemory`, `MacAddress`,
  the credentials of `AuthConfig`, ...); some are Go pointers, which `null` resets; some have
  a narrower integer type (`BlkioWeight` is a uint16); `ConsoleSize` is a Go array of two,
  which skips items past the second and zeroes missing ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache, lru_cache
from typing import Any, NamedTuple

from docktap.request import gojson
from docktap.request.schema_table import BODIES, STRUCTS

# Fields of dockerd 20.10's Go types that the spec does not list.
_EXTRA_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "AuthConfig": (
        ("auth", "string"),
        ("email", "string"),
        ("identitytoken", "string"),
        ("registrytoken", "string"),
    ),
    "ContainerConfig": (("MacAddress", "string"),),
    "ContainerCreateBody": (("MacAddress", "string"),),
    "HostConfig": (
        ("KernelMemory", "int64"),
        ("KernelMemoryTCP", "int64"),
        ("Capabilities", "[]string"),
    ),
}
# Fields whose Go type differs from what the spec says.
_GO_TYPES = {
    **{
        (struct, name): "StrSlice"
        for struct in ("ContainerConfig", "ContainerCreateBody")
        for name in ("Cmd", "Entrypoint", "Shell")
    },
    ("HostConfig", "CapAdd"): "StrSlice",
    ("HostConfig", "CapDrop"): "StrSlice",
    ("HostConfig", "BlkioWeight"): "uint16",
    ("HostConfig", "ConsoleSize"): "[2]uint",
    ("HostConfigBlkioWeightDeviceItem", "Weight"): "uint16",
    **{
        (struct, name): kind
        for struct in ("ContainerConfig", "ContainerCreateBody")
        for name, kind in (
            ("NetworkDisabled", "bool"),
            ("ArgsEscaped", "bool"),
            ("StopSignal", "string"),
        )
    },
    ("ContainerCreateBody", "HostConfig"): "*HostConfig",
    ("ContainerCreateBody", "NetworkingConfig"): "*NetworkingConfig",
    ("ContainerCreateBody", "Healthcheck"): "*HealthConfig",
    ("ContainerConfig", "Healthcheck"): "*HealthConfig",
    ("Mount", "BindOptions"): "*MountBindOptions",
    ("Mount", "VolumeOptions"): "*MountVolumeOptions",
    ("Mount", "TmpfsOptions"): "*MountTmpfsOptions",
}
# The deprecated top-level HostConfig of the create body: fields carried over into the inner one.
_CARRIED_OVER = (("Memory", 0), ("MemorySwap", 0), ("CpuShares", 0), ("CpusetCpus", ""))
_WRAPPER = "ContainerConfigWrapper"


def _go_structs() -> dict[str, tuple[tuple[str, str], ...]]:
    structs = {
        name: tuple((f, _GO_TYPES.get((name, f), kind)) for f, kind in fields)
        + _EXTRA_FIELDS.get(name, ())
        for name, fields in STRUCTS.items()
    }
    create = structs["ContainerCreateBody"]
    own = {name for name, _ in create}
    # Go's field order: the embedded Config, HostConfig, Cpuset, NetworkingConfig, then the
    # deprecated embedded HostConfig, whose fields are reached only where no other field is.
    structs[_WRAPPER] = (
        *create,
        ("Cpuset", "string"),
        *((name, kind) for name, kind in structs["HostConfig"] if name not in own),
    )
    return structs


_STRUCTS = _go_structs()
_OUTER_FIELDS = frozenset(name for name, _ in _STRUCTS["HostConfig"]) - {
    name for name, _ in _STRUCTS["ContainerCreateBody"]
}
_INNER_FIELDS = frozenset(name for name, _ in _STRUCTS["ContainerCreateBody"]) | {"Cpuset"}
_TYPES = {**BODIES, "ContainerCreate": _WRAPPER}


def _strslice(decoder: gojson.Decoder, value: Any, now: Any, where: str) -> Any:
    """strslice.StrSlice: an array of strings, or one string; a new slice either way (its
    UnmarshalJSON decodes into a fresh []string, so nothing merges and null items are "")."""
    if value is None:
        return None
    if isinstance(value, str):
        return gojson.as_slice([value])
    if isinstance(value, list) and all(item is None or isinstance(item, str) for item in value):
        return gojson.as_slice(["" if item is None else item for item in value])
    decoder.fail(value, "string", where)  # Go reports the second try, as a string
    return now


_GO = gojson.Types(_STRUCTS, {"StrSlice": _strslice})


class Decoded(NamedTuple):
    """A body as dockerd reads it (a named tuple: the guard makes one per request it reads).

    `value` holds what the body set, with the API's spelling of each field, and None when
    there is no body or dockerd rejects it; `error` is dockerd's reason for rejecting it.
    `typed` says whether the operation's API types were used; without them (an operation the
    spec gives no JSON body) `value` is the plain JSON, the last of duplicate keys kept.
    What follows the JSON value is not part of the body: dockerd never reads it.
    """

    operation: str | None
    value: Any
    error: str | None = None
    typed: bool = False

    @property
    def rejected(self) -> bool:
        return self.error is not None


def typed(operation: str | None) -> bool:
    """Whether docktap knows the Go type this operation's JSON body is decoded into."""
    return operation in _TYPES


def decode(operation: str | None, body: bytes, reads: frozenset[str] | None = None) -> Decoded:
    """The body of a request to `operation`, decoded as dockerd decodes it.

    With `reads` (dotted paths of fields of the decoded body: `HostConfig.Binds`), only those
    fields are decoded, each whole; the rest is skipped as Go skips a key of no field. Keys
    are matched, duplicates merged and the deprecated top-level HostConfig chosen as in the
    whole reading, so each field read holds what it holds there, but `error` then names only
    a type error in a field read: one elsewhere goes unseen.
    """
    kind = _TYPES.get(operation or "")
    if kind is None and not body.strip(b" \t\r\n"):
        return Decoded(operation, None)
    types = _GO if reads is None or kind is None else _narrowed(kind, reads)
    quick = gojson.quick_decode(types, kind, body) if kind is not None else None
    if quick is not None:
        value, loaded = quick
        if (
            kind == _WRAPPER
            and type(value) is dict
            and (_reaches_outer(tuple(loaded)) or "Cpuset" in value)
        ):
            value = _host_config(value, _reaches_outer(tuple(loaded)))
        return Decoded(operation, value, None, True)
    try:
        parsed, _ = gojson.parse(body)
    except gojson.JSONSyntaxError as exc:
        return Decoded(operation, None, str(exc), kind is not None)
    if kind is None:
        return Decoded(operation, gojson.plain(parsed), None, False)
    decoder = gojson.Decoder(types)
    value = gojson.finish(decoder.decode(kind, parsed))
    if decoder.errors:
        return Decoded(operation, None, decoder.errors[0], True)
    if kind == _WRAPPER and isinstance(value, dict):
        pairs: Iterable[str] = ()
        if isinstance(parsed, gojson.Object):
            pairs = (key for key, _ in parsed.pairs)
        value = _host_config(value, _has_outer(pairs))
    return Decoded(operation, value, None, True)


@cache
def _narrowed(kind: str, reads: frozenset[str]) -> gojson.Types:
    """The types of `kind` that hold only the fields at `reads` (see `decode`)."""
    keep: dict[str, set[str]] = {}
    whole: set[str] = set()
    top = "ContainerCreateBody" if kind == _WRAPPER else kind
    for path in reads:
        struct, *names = [top, *path.split(".")]
        for depth, name in enumerate(names):
            found = _GO.field(struct, name)
            if found is None:
                raise ValueError(f"{path}: {struct} has no field {name}")
            keep.setdefault(struct, set()).add(found[0])
            inner = found[1].removeprefix("*").removeprefix("[]").removeprefix("map[string]")
            if depth == len(names) - 1:
                whole.add(inner)
            struct = inner
    if kind == _WRAPPER:
        # The deprecated top-level HostConfig is the HostConfig when there is no other.
        host = _OUTER_FIELDS if "HostConfig" in whole else keep.get("HostConfig", set())
        outer = {name for name in host if name in _OUTER_FIELDS}
        if "CpusetCpus" in host:
            outer.add("Cpuset")
        keep[_WRAPPER] = keep[top] | outer
    return _GO.narrowed({name: frozenset(f) for name, f in keep.items() if name not in whole})


def without_zeros(operation: str | None, value: Any) -> Any:
    """A decoded body of `operation` without the fields that hold their zero value, which Go
    cannot tell from fields left out: bodies dockerd makes the same thing of come out equal."""
    kind = _TYPES.get(operation or "")
    if kind is None:
        return value
    return gojson.without_zeros(
        _STRUCTS, "ContainerCreateBody" if kind == _WRAPPER else kind, value
    )


def _has_outer(keys: Iterable[str]) -> bool:
    """Whether a key of the body reached the deprecated top-level HostConfig (even with null,
    that allocates it)."""
    for key in keys:
        if key in _INNER_FIELDS:
            continue  # spelled as a field of the body itself: the common case, looked up once
        found = _GO.field(_WRAPPER, key)
        if found is not None and found[0] in _OUTER_FIELDS:
            return True
    return False


@lru_cache(maxsize=256)
def _reaches_outer(keys: tuple[str, ...]) -> bool:
    """`_has_outer` of a body's keys, in order: they repeat from one create to the next."""
    return _has_outer(keys)


def _host_config(value: dict[str, Any], has_outer: bool) -> dict[str, Any]:
    """The create body with the HostConfig dockerd uses (runconfig's getHostConfig), when a
    key reached the deprecated top-level one or `Cpuset` is set; otherwise it is the body's
    own HostConfig, or none (the common case), and the body is taken as it is."""
    if not has_outer and "Cpuset" not in value:
        return value
    outer = {name: value.pop(name) for name in list(value) if name in _OUTER_FIELDS}
    cpuset = value.pop("Cpuset", "")
    inner = value.get("HostConfig")
    if isinstance(inner, dict) and has_outer:
        for name, zero in _CARRIED_OVER:
            if outer.get(name, zero) != zero and inner.get(name, zero) == zero:
                inner[name] = outer[name]
        chosen: dict[str, Any] | None = inner
    elif isinstance(inner, dict):
        chosen = inner
    else:
        chosen = outer if has_outer else None
    if chosen is not None:
        if cpuset and not chosen.get("CpusetCpus"):
            chosen["CpusetCpus"] = cpuset
        value["HostConfig"] = chosen
    return value

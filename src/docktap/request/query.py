"""Query parameters read as dockerd reads them: Go's url.ParseQuery, then httputils' helpers.

Parameters come from the query string, and, for a POST, PUT or PATCH whose Content-Type is
`application/x-www-form-urlencoded`, from the body too, and those come first: dockerd's
`httputils.ParseForm` reads such a body, so `POST /images/create?fromImage=a` with the body
`fromImage=b` pulls b.

Go splits the query on `&` only, drops a pair holding a `;` and a pair with a bad `%`
escape, turns `+` into a space, and keeps every value of a repeated name; dockerd reads the
first. Booleans go through `httputils.BoolValue`: the value, trimmed of white space and in lower
case, is false when it is empty, `0`, `no`, `false` or `none`, and true otherwise (`1`, `true`,
`True`, `yes`, but also `2` or `off`). Integers through `Int64ValueOrDefault`: an empty value
gives the default; anything but a base-10 int64 is an error (dockerd answers 400), which
`Int64ValueOrZero` turns into 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from docktap.request.schema_table import QUERIES

_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_FALSE = frozenset({"", "0", "no", "false", "none"})
_INT64 = re.compile(r"[+-]?[0-9]+")
# Go's strings.TrimSpace: Unicode white space (Python's str.strip knows a few more, such as
# the information separators \x1c-\x1f, which Go keeps).
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _unescape(text: str) -> str | None:
    """Go's url.QueryUnescape; None where Go gives an error."""
    if _ESCAPE.search(text):
        return None
    raw = text.replace("+", " ").encode("utf-8", "surrogateescape")
    out = bytearray()
    index = 0
    while index < len(raw):
        if raw[index] == ord("%"):
            out.append(int(raw[index + 1 : index + 3], 16))
            index += 3
        else:
            out.append(raw[index])
            index += 1
    # Go keeps the bytes; text stands in for them, U+FFFD for what is not UTF-8.
    return out.decode("utf-8", "replace")


def form_in_body(method: str, headers: Iterable[tuple[str, str]]) -> bool:
    """Whether dockerd reads parameters from this request's body (Go's Request.ParseForm): a
    POST, PUT or PATCH whose Content-Type is `application/x-www-form-urlencoded`."""
    if method not in ("POST", "PUT", "PATCH"):
        return False
    content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
    return content_type.partition(";")[0].strip().lower() == "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Query:
    """The parameters of a query string, every value of each name in order."""

    values: dict[str, list[str]]

    @classmethod
    def parse(cls, query: str) -> Query:
        values: dict[str, list[str]] = {}
        for pair in query.split("&"):
            if not pair or ";" in pair:
                continue
            raw_name, _, raw_value = pair.partition("=")
            name, value = _unescape(raw_name), _unescape(raw_value)
            if name is None or value is None:
                continue
            values.setdefault(name, []).append(value)
        return cls(values)

    @classmethod
    def of_target(cls, target: str) -> Query:
        return cls.parse(target.partition("?")[2])

    @classmethod
    def of_request(
        cls, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> Query:
        """The parameters dockerd reads for a request: a form body's first, then the query's
        (Go's Request.ParseForm)."""
        query = cls.of_target(target)
        if not form_in_body(method, headers):
            return query
        form = cls.parse(body.decode("utf-8", "surrogateescape"))
        values = {name: list(found) for name, found in form.values.items()}
        for name, found in query.values.items():
            values.setdefault(name, []).extend(found)
        return cls(values)

    def has(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str) -> str:
        """The first value, or "" (Go's FormValue)."""
        found = self.values.get(name)
        return found[0] if found else ""

    def bool_value(self, name: str) -> bool:
        """httputils.BoolValue."""
        return self.get(name).strip(_GO_SPACE).lower() not in _FALSE

    def int64_value_or_default(self, name: str, default: int) -> int:
        """httputils.Int64ValueOrDefault; ValueError where dockerd answers 400."""
        value = self.get(name)
        if value == "":
            return default
        if not _INT64.fullmatch(value) or not -(1 << 63) <= int(value) < 1 << 63:
            raise ValueError(f'strconv.ParseInt: parsing "{value}": invalid syntax')
        return int(value)


# Where dockerd 20.10 reads a parameter otherwise than the spec says: the build's resource
# limits are read with Int64ValueOrZero (absent is 0, where the spec gives no default), and
# it reads some the spec no longer lists. The docker CLI 20.10 sends them all, at zero. A
# build's networkmode becomes the HostConfig.NetworkMode of each container the build runs,
# and daemon.create sets a blank one to `default`: the CLI 20.10 sends `default` where the
# CLI 28 sends nothing, for the same build.
_DOCKERD_PARAMS: dict[str, dict[str, tuple[str, str]]] = {
    "ImageBuild": {
        "networkmode": ("string", "default"),
        **{name: ("int64", "0") for name in ("cpuperiod", "cpuquota", "cpushares", "memory")},
        **{name: ("int64", "0") for name in ("memswap", "shmsize")},
        "cgroupparent": ("string", ""),
        "cpusetmems": ("string", ""),
        "ulimits": ("json", ""),  # JSON, and the CLI sends `null` for none
        "isolation": ("string", ""),
    },
    # GET /containers/json reads `limit` with strconv.Atoi and applies it only above 0
    # (daemon/list.go: `Limit > 0`): limit=0, which the CLI 20.10 sends for `ps -n 0`, and
    # limit=-5 list what no limit lists, and the CLI 28 sends none for either.
    "ContainerList": {"limit": ("count", "")},
}
# Booleans dockerd reads as true while another parameter is in effect: GET /containers/json
# lists the stopped containers too under a limit (daemon/list.go: `!ctx.All && ctx.Limit <=
# 0`), so `ps -a -n 3` and `ps -n 3` ask for the same list.
_IMPLIED: dict[str, dict[str, str]] = {"ContainerList": {"all": "limit"}}
_PARAMS = {
    operation: {name: (kind, default) for name, kind, default in params}
    | _DOCKERD_PARAMS.get(operation, {})
    for operation, params in QUERIES.items()
}


def parameters(operation: str | None) -> Mapping[str, tuple[str, str]]:
    """The query parameters dockerd reads for `operation`, by name: each one's type (`bool`,
    `int64`, `count` for an int64 that counts only above 0, `string`, or `json` for a string
    dockerd decodes as JSON) and the value an absent one reads as ("" where there is none:
    absent and every value differ)."""
    return _PARAMS.get(operation or "", {})


def implied(operation: str | None) -> Mapping[str, str]:
    """The boolean parameters of `operation` dockerd reads as true, by name, while the
    parameter each maps to is in effect (a `count` above 0)."""
    return _IMPLIED.get(operation or "", {})

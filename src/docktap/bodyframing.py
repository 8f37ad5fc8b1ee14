"""Where an HTTP/1.x body ends: the framing rules, and readers that cut bodies out of bytes.

h11 parses the heads the observer sees, but its body readers copy every body byte through its
buffers (parsing a 300 MB `docker load` cost more CPU than relaying it) and keep their state
private. So the observer takes bodies past h11: it decides from the parsed head how the body is
framed, and one of the readers here cuts the body out of the bytes as they come, without copying
a byte it does not have to.

The rules are those of Go's net/http (dockerd's HTTP server and the docker CLI's client), which
decide what the daemon really read, where they differ from RFC 9112 or from h11:

- Transfer-Encoding is ignored on HTTP/1.0 messages (Go: "Issue 12785; ignore
  Transfer-Encoding on HTTP/1.0 requests"); on HTTP/1.1 it overrides Content-Length.
- A request with neither header has no body; a response with neither reads until the
  connection closes. Responses to HEAD, and 1xx, 204 and 304 responses, have no body.
- A chunk-size line ends at LF; trailing spaces, tabs and CRs are dropped, and a chunk
  extension (from the first `;`) is ignored. The size is at most 16 hex digits, and the line
  (LF included) shorter than 4096 bytes. The chunk data is followed by exactly CRLF.
- After the last chunk either CRLF follows, or a trailer section that ends with CRLF CRLF
  within 4096 bytes; its fields end at the first empty line and each has a colon.
- A connection persists after an HTTP/1.1 message unless `Connection` has the token `close`,
  and after an HTTP/1.0 one only when it has `keep-alive` and not `close`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import partial

# Go's limits: internal/chunked.go maxLineLength, and bufio's default buffer that bounds the
# trailer section (transfer.go seeUpcomingDoubleCRLF).
MAX_CHUNK_LINE = 4096
MAX_TRAILER = 4096
# Go reads at most 16 hex digits of a chunk size (parseHexUint); an empty size reads as 0.
_HEX = re.compile(rb"[0-9A-Fa-f]{0,16}")

HeadFields = Iterable[tuple[bytes, bytes]]
#: How a message's body is framed, as a maker of fresh readers: the framing depends on the
#: head alone, so a head read once frames the body of every message sent with it again.
Framing = Callable[[], "BodyReader"]


class FramingError(ValueError):
    """The framing bytes of a body are not valid HTTP: where the body ends cannot be known.

    `pieces` holds the body bytes the failing `read` found before the offending line (or CRLF),
    and `unread` the bytes from its start on, so that however the bytes were split, a caller
    loses none and explains none twice.
    """

    def __init__(self, message: str, unread: bytes, pieces: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.unread = unread
        self.pieces = pieces if pieces is not None else []


def _piece(data: bytes, start: int, end: int) -> bytes:
    """data[start:end], without a copy when that is all of it."""
    return data if start == 0 and end == len(data) else data[start:end]


class BodyReader:
    """Cuts one body out of the bytes that follow its head.

    `read(data, pos)` takes the bytes data[pos:] and returns the body bytes found in them and
    where in `data` the body ended (len(data) when it has not ended yet). A reader keeps what it
    needs of a line cut between two reads, so the caller never has to hold bytes back.
    """

    done = False

    def read(self, data: bytes, pos: int) -> tuple[list[bytes], int]:
        raise NotImplementedError

    def skip(self, data: bytes, pos: int) -> int:
        """Where the body ends, as `read` says, for a caller that needs none of its bytes."""
        return self.read(data, pos)[1]

    def eof(self) -> bool:
        """The connection closed: True when that ends the body whole."""
        return self.done

    @property
    def held(self) -> bytes:
        """Bytes read but not yet explained: the start of a framing line."""
        return b""


class LengthBody(BodyReader):
    """A body of a known length (Content-Length, or 0 for a message without a body)."""

    def __init__(self, length: int) -> None:
        self.left = length
        self.done = length == 0

    def read(self, data: bytes, pos: int) -> tuple[list[bytes], int]:
        end = self.skip(data, pos)
        return ([_piece(data, pos, end)] if end > pos else []), end

    def skip(self, data: bytes, pos: int) -> int:
        size = min(self.left, len(data) - pos)
        self.left -= size
        self.done = self.left == 0
        return pos + size


class CloseDelimitedBody(BodyReader):
    """A response body without a length: it ends when the daemon closes the connection."""

    def read(self, data: bytes, pos: int) -> tuple[list[bytes], int]:
        return ([_piece(data, pos, len(data))] if pos < len(data) else []), len(data)

    def eof(self) -> bool:
        self.done = True
        return True


class ChunkedBody(BodyReader):
    """A body in chunked transfer coding, de-chunked."""

    def __init__(self) -> None:
        self._line = bytearray()  # an unfinished size line, the CRLF after data or trailers
        self._in_chunk = 0  # data bytes left in the current chunk
        self._after_data = False  # the CRLF after a chunk's data is due
        self._trailer = False  # the last chunk has been read

    @property
    def held(self) -> bytes:
        return bytes(self._line)

    def read(self, data: bytes, pos: int) -> tuple[list[bytes], int]:
        pieces: list[bytes] = []
        end = len(data)
        try:
            while pos < end and not self.done:
                if self._in_chunk:
                    size = min(self._in_chunk, end - pos)
                    pieces.append(_piece(data, pos, pos + size))
                    self._in_chunk -= size
                    pos += size
                    self._after_data = self._in_chunk == 0
                elif self._after_data:
                    pos = self._crlf(data, pos)
                elif self._trailer:
                    pos = self._trailers(data, pos)
                else:
                    pos = self._size_line(data, pos)
        except FramingError as exc:
            exc.pieces = pieces
            raise
        return pieces, pos

    def _fail(self, message: str, data: bytes, pos: int) -> FramingError:
        return FramingError(message, bytes(self._line) + data[pos:])

    def _crlf(self, data: bytes, pos: int) -> int:
        take = 2 - len(self._line)
        self._line += data[pos : pos + take]
        if len(self._line) < 2:
            return len(data)
        if self._line != b"\r\n":
            raise FramingError("malformed chunked encoding", bytes(self._line) + data[pos + take :])
        self._line.clear()
        self._after_data = False
        return pos + take

    def _size_line(self, data: bytes, pos: int) -> int:
        room = MAX_CHUNK_LINE - len(self._line)
        newline = data.find(b"\n", pos, pos + room)
        if newline < 0:
            if len(data) - pos >= room:
                raise self._fail("chunk size line too long", data, pos)
            self._line += data[pos:]
            return len(data)
        line = bytes(self._line) + data[pos : newline + 1]
        if len(line) >= MAX_CHUNK_LINE:
            raise self._fail("chunk size line too long", data, pos)
        size = _chunk_size(line)
        if size is None:
            raise self._fail("bad chunk size line", data, pos)
        self._line.clear()
        if size:
            self._in_chunk = size
        else:
            self._trailer = True
        return newline + 1

    def _trailers(self, data: bytes, pos: int) -> int:
        start = len(self._line)
        self._line += data[pos : pos + MAX_TRAILER - start]
        section = bytes(self._line)
        if section[:2] == b"\r\n":
            end: int | None = 2
        elif len(section) < 2:
            return len(data)
        elif b"\r\n\r\n" not in section:
            if len(section) >= MAX_TRAILER:
                raise FramingError("trailer section too long", section[:start] + data[pos:])
            return len(data)
        else:
            end = _trailer_end(section)
        # An end inside bytes held from before would give back bytes already taken: only
        # LF-terminated trailers can do that, and they are reported rather than followed.
        if end is None or end <= start:
            raise FramingError("malformed trailer section", section[:start] + data[pos:])
        self._line.clear()
        self.done = True
        return pos + end - start


def _chunk_size(line: bytes) -> int | None:
    """The size on a chunk-size line as Go reads it, None when it is not one."""
    digits = line.rstrip(b" \t\r\n").split(b";", 1)[0]
    if not _HEX.fullmatch(digits):
        return None
    return int(digits, 16) if digits else 0


def _trailer_end(section: bytes) -> int | None:
    """Where a trailer section ends (after its empty line), None when a field is malformed."""
    pos = 0
    while (newline := section.find(b"\n", pos)) >= 0:
        line = section[pos:newline].rstrip(b"\r")
        if not line:
            return newline + 1
        folded = line[:1] in (b" ", b"\t")
        if (folded and pos == 0) or (not folded and b":" not in line):
            return None
        pos = newline + 1
    return None


# -- which reader a head calls for --------------------------------------------------------


def _tokens(headers: HeadFields, name: bytes) -> set[bytes]:
    """The comma-separated tokens of every `name` field, lower-cased (names come lower-cased,
    as h11 gives them)."""
    return {
        token.strip().lower()
        for key, value in headers
        if key == name
        for token in value.split(b",")
    }


def _value(headers: HeadFields, name: bytes) -> bytes | None:
    return next((value for key, value in headers if key == name), None)


def _chunked(http_version: bytes, headers: HeadFields) -> bool:
    # h11 has checked that a Transfer-Encoding is exactly "chunked".
    return http_version != b"1.0" and _value(headers, b"transfer-encoding") is not None


def request_length(http_version: bytes, headers: HeadFields) -> int | None:
    """The length of the body of a request with this parsed head (0: none); None when it is
    chunked."""
    if _chunked(http_version, headers):
        return None
    length = _value(headers, b"content-length")
    return int(length) if length is not None else 0


def request_framing(http_version: bytes, headers: HeadFields) -> Framing:
    """How the body of a request with this parsed head is framed."""
    length = request_length(http_version, headers)
    return ChunkedBody if length is None else partial(LengthBody, length)


def response_length(
    request_method: bytes, status: int, http_version: bytes, headers: HeadFields
) -> int | None:
    """The length of the body of a final (not 1xx) response with this parsed head (0: none);
    None when it is chunked or read until the connection closes."""
    if request_method == b"HEAD" or status in (204, 304):
        return 0
    if _chunked(http_version, headers):
        return None
    length = _value(headers, b"content-length")
    return int(length) if length is not None else None


def response_framing(
    request_method: bytes, status: int, http_version: bytes, headers: HeadFields
) -> Framing:
    """How the body of a final (not 1xx) response with this parsed head is framed."""
    length = response_length(request_method, status, http_version, headers)
    if length is not None:
        return partial(LengthBody, length)
    return ChunkedBody if _chunked(http_version, headers) else CloseDelimitedBody


def keeps_alive(http_version: bytes, headers: HeadFields) -> bool:
    """Whether the connection may carry another message after this one (Go's shouldClose)."""
    tokens = _tokens(headers, b"connection")
    if http_version == b"1.0":
        return b"keep-alive" in tokens and b"close" not in tokens
    return b"close" not in tokens

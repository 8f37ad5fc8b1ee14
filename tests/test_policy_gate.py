"""The gate: requests held until decided, forwarded byte for byte or answered 403 in turn."""

from __future__ import annotations

import json
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from docktap.observer import MAX_HEAD_SIZE
from docktap.policy.gate import Action, Answer, Decided, EndOfInput, Forward, Gate
from docktap.policy.model import Client, ClientRules, Limits, Policy, Rule

POLICY = Policy(
    (
        ClientRules(
            Client(1000),
            {
                "SystemPing": Rule("SystemPing", "GET", "/_ping"),
                "ContainerCreate": Rule(
                    "ContainerCreate", "POST", "/containers/create", Limits(frozenset({"bb"}))
                ),
                "ContainerAttach": Rule("ContainerAttach", "POST", "/containers/{id}/attach"),
                "PutContainerArchive": Rule(
                    "PutContainerArchive", "PUT", "/containers/{id}/archive"
                ),
            },
        ),
    )
)
PING = b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n"
PONG = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"


def gate(enforce: bool = True, max_body: int = 1 << 20) -> Gate:
    return Gate(lambda: POLICY, 1000, "/usr/bin/docker", enforce, max_body)


def create(body: bytes, version: bytes = b"1.1", extra: bytes = b"") -> bytes:
    return (
        b"POST /v1.41/containers/create HTTP/"
        + version
        + b"\r\nHost: d\r\n"
        + extra
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


def forwarded(actions: Sequence[object]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Forward))


def answers(actions: Sequence[object]) -> list[Answer]:
    return [a for a in actions if isinstance(a, Answer)]


def test_an_allowed_request_is_forwarded_as_sent_once_its_head_is_whole() -> None:
    g = gate()
    assert g.from_client(PING[:10]) == []
    actions = g.from_client(PING[10:])
    assert forwarded(actions) == PING
    (decided,) = [a for a in actions if isinstance(a, Decided)]
    assert decided.seq == 1 and decided.decision.allowed


def test_a_create_is_decided_on_its_whole_body() -> None:
    g = gate()
    request = create(b'{"Image":"bb"}')
    assert forwarded(g.from_client(request[:-3])) == b""
    assert forwarded(g.from_client(request[-3:])) == request


def _chunked(body: bytes) -> bytes:
    return (
        b"POST /containers/create HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % 10
        + body[:10]
        + b"\r\n"
        + b"%x\r\n" % (len(body) - 10)
        + body[10:]
        + b"\r\n0\r\n\r\n"
    )


ALLOWED = (
    create(b'{"Image":"bb","HostConfig":{"Privileged":false}}'),
    _chunked(b'{"Image":"bb","HostConfig":{"NetworkMode":"none"}}'),
    PING + create(b'{"Image":"bb"}') + PING,
)


def test_allowed_requests_are_forwarded_whole_wherever_the_reads_end() -> None:
    # The docker CLI may write a head and its body apart: the read can end at the head's end,
    # at any byte of the body, or after each byte.
    for request in ALLOWED:
        for at in range(1, len(request)):
            g = gate()
            actions = [*g.from_client(request[:at]), *g.from_client(request[at:])]
            assert forwarded(actions) == request, (request, at)
            assert all(a.decision.allowed for a in actions if isinstance(a, Decided))
        g = gate()
        one_by_one = [a for at in range(len(request)) for a in g.from_client(request[at : at + 1])]
        assert forwarded(one_by_one) == request


ARCHIVE = b"PUT /containers/c/archive?path=/ HTTP/1.1\r\nHost: d\r\nContent-Length: 6\r\n\r\nabcdef"
DENIED = (
    create(b'{"Image":"bb","HostConfig":{"Privileged":true}}'),
    create(b'{"Image":"alpine"}'),
    b"DELETE /containers/c HTTP/1.1\r\nHost: d\r\n\r\n",
)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([*ALLOWED, ARCHIVE]), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_pipelined_allowed_requests_reach_the_daemon_as_sent_however_they_are_read(
    requests: list[bytes], cuts: list[int]
) -> None:
    sent = b"".join(requests)
    g = gate()
    actions = [a for read in _cut(sent, cuts) for a in g.from_client(read)]
    assert forwarded(actions) == sent
    assert not answers(actions)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([*ALLOWED, ARCHIVE, *DENIED]), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_warn_mode_forwards_every_byte_however_it_is_read(
    requests: list[bytes], cuts: list[int]
) -> None:
    sent = b"".join(requests)
    g = gate(enforce=False)
    actions = [a for read in _cut(sent, cuts) for a in g.from_client(read)]
    assert forwarded(actions) == sent
    decided = [a.decision.allowed for a in actions if isinstance(a, Decided)]
    assert decided.count(False) == sum(r in DENIED for r in requests)


def test_a_denied_body_is_answered_wherever_the_reads_end() -> None:
    request = create(b'{"Image":"bb","HostConfig":{"Privileged":true}}')
    for at in range(1, len(request)):
        g = gate()
        actions = [*g.from_client(request[:at]), *g.from_client(request[at:])]
        assert forwarded(actions) == b"", at
        (answer,) = answers(actions)
        assert b"HostConfig.Privileged not allowed" in answer.data


def test_a_denied_request_gets_403_and_the_connection_goes_on() -> None:
    g = gate()
    actions = g.from_client(create(b'{"Image":"bb","hostconfig":{"privileged":true}}') + PING)
    (answer,) = answers(actions)
    head, _, body = answer.data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"Content-Type: application/json" in head and b"Connection: close" not in head
    assert json.loads(body) == {
        "message": "docktap policy: denied POST /containers/create: "
        "HostConfig.Privileged not allowed for uid 1000 (/usr/bin/docker)"
    }
    assert not answer.close
    assert forwarded(actions) == PING  # the ping after it goes on
    assert [a.seq for a in actions if isinstance(a, Decided)] == [1, 2]


def test_a_denial_waits_for_the_answers_before_it() -> None:
    g = gate()
    actions = g.from_client(PING + create(b'{"Image":"alpine"}') + PING)
    assert forwarded(actions) == PING and answers(actions) == []
    actions = g.from_daemon(PONG[:-1])
    assert actions == []
    actions = g.from_daemon(PONG[-1:])
    (answer,) = answers(actions)
    assert b"image alpine not allowed" in answer.data
    assert forwarded(actions) == PING
    assert actions.index(answer) < next(i for i, a in enumerate(actions) if isinstance(a, Forward))


def test_the_daemons_answers_are_followed_however_they_are_cut() -> None:
    g = gate()
    g.from_client(PING + PING + create(b'{"Image":"alpine"}'))
    daemon = b"HTTP/1.1 100 Continue\r\n\r\n" + PONG + PONG
    for at in range(len(daemon) - 1):
        assert answers(g.from_daemon(daemon[at : at + 1])) == [], at
    (answer,) = answers(g.from_daemon(daemon[-1:]))
    assert b"image alpine not allowed" in answer.data


def test_a_chunked_body_is_read_whole_and_forwarded_as_sent() -> None:
    g = gate()
    actions = g.from_client(_chunked(b'{"Image":"bb","HostConfig":{"Privileged":true}}'))
    assert forwarded(actions) == b""
    assert b"HostConfig.Privileged" in answers(actions)[0].data


def test_http_1_0_is_read_as_dockerd_reads_it_and_closes_after() -> None:
    g = gate()
    # Go ignores Transfer-Encoding on HTTP/1.0: the body is framed by Content-Length alone.
    request = create(b'{"Image":"bb","Privileged":true}', b"1.0", b"Transfer-Encoding: chunked\r\n")
    (answer,) = answers(g.from_client(request))
    assert answer.close and b"Connection: close" in answer.data
    assert b"HostConfig.Privileged" in answer.data
    assert g.from_client(PING) == []


def test_a_body_over_the_bound_is_denied_and_closes() -> None:
    g = gate(max_body=16)
    (answer,) = answers(g.from_client(create(b'{"Image":"bb","Labels":{"a":"bbbbbbbbbb"}}')))
    assert answer.close and b"a request body over 16 bytes" in answer.data


def test_what_cannot_be_parsed_is_denied() -> None:
    g = gate()
    actions = g.from_client(b"GET /_ping HTTP/1.1\r\nbad header\r\n\r\n")
    (answer,) = answers(actions)
    assert answer.close and b"docktap policy: denied: a request docktap cannot parse" in answer.data
    assert forwarded(actions) == b""


def test_an_operation_without_limits_streams_its_body() -> None:
    g = gate()
    head = b"PUT /containers/c/archive?path=/ HTTP/1.1\r\nHost: d\r\nContent-Length: 6\r\n\r\n"
    assert forwarded(g.from_client(head + b"abc")) == head + b"abc"
    assert forwarded(g.from_client(b"def" + PING)) == b"def" + PING


def test_after_a_hijack_bytes_flow_raw() -> None:
    g = gate()
    attach = b"POST /containers/c/attach?stream=1 HTTP/1.1\r\nHost: d\r\nUpgrade: tcp\r\n\r\n"
    assert forwarded(g.from_client(attach)) == attach
    assert g.from_client(b"stdin bytes") == []  # held until the daemon has answered
    actions = g.from_daemon(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\n\r\nout")
    assert forwarded(actions) == b"stdin bytes"
    assert g.raw
    assert g.from_client(b"POST /containers/create HTTP/1.1\r\n\r\n") == [
        Forward(b"POST /containers/create HTTP/1.1\r\n\r\n")
    ]


def test_a_refused_hijack_goes_on_deciding() -> None:
    g = gate()
    attach = b"POST /containers/c/attach HTTP/1.1\r\nHost: d\r\nUpgrade: tcp\r\n\r\n"
    g.from_client(attach)
    assert g.from_client(create(b'{"Image":"alpine"}')) == []
    actions = g.from_daemon(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
    assert not g.raw
    assert b"image alpine not allowed" in answers(actions)[0].data


def test_warn_mode_forwards_and_reports() -> None:
    g = gate(enforce=False)
    request = create(b'{"Image":"alpine"}')
    actions = g.from_client(request)
    assert forwarded(actions) == request and answers(actions) == []
    (decided,) = [a for a in actions if isinstance(a, Decided)]
    assert not decided.decision.allowed and not decided.enforced


def test_the_end_of_input_passes_once_nothing_is_held() -> None:
    g = gate()
    assert g.client_eof() == [EndOfInput()]
    g = gate()
    g.from_client(create(b'{"Image":"bb"}')[:-2])
    assert g.client_eof() == [EndOfInput()]  # the unfinished request never reached the daemon


def test_a_reloaded_policy_decides_the_next_request_even_one_seen_before() -> None:
    holder = [POLICY]
    g = Gate(lambda: holder[0], 1000, "/usr/bin/docker")
    assert forwarded(g.from_client(PING)) == PING
    g.from_daemon(PONG)
    holder[0] = Policy(())
    (answer,) = answers(g.from_client(PING))
    assert b"no rule for uid 1000 (/usr/bin/docker)" in answer.data


def test_a_response_head_the_observers_reading_refuses_leaves_denials_answered_at_once() -> None:
    g = gate()
    assert answers(g.from_client(PING + create(b'{"Image":"alpine"}'))) == []
    # A status of four digits: not a head h11 (and the observer) read, so nothing after it
    # can be followed.
    (answer,) = answers(g.from_daemon(b"HTTP/1.1 2000 OK\r\n\r\nOK"))
    assert b"image alpine not allowed" in answer.data
    assert not g.raw


def test_a_raw_stream_to_a_request_that_cannot_hijack_does_not_make_the_connection_raw() -> None:
    logs = b"GET /containers/c/logs?stdout=1 HTTP/1.1\r\nHost: d\r\n\r\n"
    policy = Policy(
        (ClientRules(Client(1000), {"ContainerLogs": Rule("ContainerLogs", "GET", "/x")}),)
    )
    g = Gate(lambda: policy, 1000, "/usr/bin/docker")
    assert forwarded(g.from_client(logs)) == logs
    stream = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\nout"
    assert g.from_daemon(stream) == []
    assert not g.raw
    # The logs run until the daemon closes: a denial after them waits (this policy has no ping).
    actions = g.from_client(PING)
    assert answers(actions) == [] and forwarded(actions) == b""


def _outcome(g: Gate, reads: Sequence[bytes]) -> tuple[bytes, list[Answer], list[Decided]]:
    """What the gate does with the client's reads, then with four answers of the daemon."""
    actions = [action for read in reads for action in g.from_client(read)]
    actions += [action for _ in range(4) for action in g.from_daemon(PONG)]
    return forwarded(actions), answers(actions), [a for a in actions if isinstance(a, Decided)]


def test_requests_whole_in_a_read_are_decided_as_when_they_come_byte_by_byte() -> None:
    archive = (
        b"PUT /containers/c/archive?path=/ HTTP/1.1\r\nHost: d\r\nContent-Length: 3\r\n\r\nabc"
    )
    allowed = create(b'{"Image":"bb","HostConfig":{"Binds":null}}\n')
    requests = (
        PING,
        allowed,
        archive,
        create(b""),  # no body: decided on its head (and denied: dockerd cannot decode it)
        create(b'{"Image":"bb","Image":"alpine"}'),
        PING,
        create(b'{"Image":"alpine"}', b"1.0"),  # denied, and the connection closes
        PING,
    )
    stream = b"".join(requests)
    whole = _outcome(gate(), [stream])
    assert whole == _outcome(gate(), [bytes([b]) for b in stream])
    assert whole == _outcome(gate(), requests)  # each read ends where a head or body does
    sent, denials, decisions = whole
    assert sent == PING + allowed + archive + PING
    assert [d.decision.allowed for d in decisions] == [True, True, True, False, False, True, False]
    assert [a.close for a in denials] == [False, False, True]
    # Past the bound, the first create's body is refused however it comes, and that closes.
    bound = _outcome(gate(max_body=40), [stream])
    assert bound == _outcome(gate(max_body=40), [bytes([b]) for b in stream])
    assert bound[0] == PING and [a.close for a in bound[1]] == [True]


def test_the_daemons_answers_whole_in_a_read_are_followed_as_when_cut_byte_by_byte() -> None:
    head_request = b"HEAD /_ping HTTP/1.1\r\nHost: d\r\n\r\n"
    policy = Policy(
        (
            ClientRules(
                Client(1000),
                {**POLICY.clients[0].rules, "SystemPingHead": Rule("SystemPingHead", "HEAD", "/")},
            ),
        )
    )
    answers_ = (
        b"HTTP/1.1 100 Continue\r\n\r\n" + PONG,
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",  # to HEAD: no body follows
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nOK\r\n0\r\n\r\n",
    )
    daemon = b"".join(answers_)
    outcomes = []
    for reads in ([daemon], [bytes([b]) for b in daemon], answers_):
        g = Gate(lambda: policy, 1000, "/usr/bin/docker")
        g.from_client(PING + head_request + PING + PING + create(b'{"Image":"alpine"}') + PING)
        actions = [action for read in reads for action in g.from_daemon(read)]
        outcomes.append(actions)
        (answer,) = answers(actions)  # after the four answers, and only then
        assert b"image alpine not allowed" in answer.data
        assert actions.index(answer) == len(actions) - 3 and actions[-1] == Forward(PING)
        assert not g.raw
    assert outcomes[0] == outcomes[1] == outcomes[2]


IMAGES = Policy(
    (
        ClientRules(
            Client(1000),
            {
                **POLICY.clients[0].rules,
                "ImageCreate": Rule("ImageCreate", "POST", "/images/create", Limits(frozenset())),
            },
        ),
    )
)


def test_an_import_streams_its_tarball_however_large_and_a_form_pull_is_read_whole() -> None:
    # `docker import -` sends its tarball as the body of ImageCreate, chunked, as text/plain:
    # dockerd reads no parameter from it, so it is decided on its head and streams on, past
    # the bound; it was held to the bound and denied, where `policy check` allowed it.
    tarball = bytes(range(256)) * 40
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (tarball[:4000], tarball[4000:]))
    body += b"0\r\n\r\n"
    imported = (
        b"POST /v1.41/images/create?fromSrc=-&repo=imp HTTP/1.1\r\nHost: d\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n" + body
    )
    form = b"fromImage=alpine"
    pull = (
        b"POST /v1.41/images/create HTTP/1.1\r\nHost: d\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s"
        % (len(form), form)
    )
    stream = imported + pull + PING
    outcomes = []
    cut = [stream[:60], stream[60:5000], stream[5000:]]  # in the head, then in the tarball
    for reads in ([stream], [bytes([b]) for b in stream], cut):
        g = Gate(lambda: IMAGES, 1000, "/usr/bin/docker", True, 64)
        actions = [action for read in reads for action in g.from_client(read)]
        actions += g.from_daemon(PONG)
        sent = forwarded(actions)
        assert sent == imported + PING
        (answer,) = answers(actions)  # the pull's form names an image the policy does not
        assert b"image alpine not allowed" in answer.data and not answer.close
        outcomes.append((sent, [a.decision for a in actions if isinstance(a, Decided)]))
    assert outcomes[0] == outcomes[1] == outcomes[2]


def test_what_follows_a_waiting_denial_is_held_and_counted_until_the_daemon_lets_it_go() -> None:
    # A long poll before a denial: the denial waits for its answer, and so does everything the
    # client sends after it, which only the daemon can let go; the relay stops reading the
    # client past a bound of what the gate says it holds.
    events = b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n"
    policy = Policy(
        (
            ClientRules(
                Client(1000),
                {**POLICY.clients[0].rules, "SystemEvents": Rule("SystemEvents", "GET", "/")},
            ),
        )
    )
    denied = create(b'{"Image":"alpine"}')
    after = PING * 3 + create(b'{"Image":"bb"}')[:30]
    stream = events + denied + after
    for reads in ([stream], [bytes([b]) for b in stream]):
        g = Gate(lambda: policy, 1000, "/usr/bin/docker")
        actions: list[Action] = []
        seen = 0
        for read in reads:
            actions += g.from_client(read)
            seen += len(read)
            # Nothing of a head or a body being read counts, only what waits for the daemon.
            assert g.held == max(0, seen - len(events + denied)), seen
        assert forwarded(actions) == events and answers(actions) == []
        chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        assert g.from_daemon(chunked + b"5\r\n{...}\r\n") == []
        assert g.held == len(after)  # the stream goes on: still held
        actions = g.from_daemon(b"0\r\n\r\n")
        (answer,) = answers(actions)
        assert b"image alpine not allowed" in answer.data and not answer.close
        assert forwarded(actions) == PING * 3  # the rest is decided as before
        assert g.held == 0  # the create's unfinished head waits for the client, not counted


def test_what_follows_a_hijack_is_counted_until_the_daemon_has_answered_it() -> None:
    attach = b"POST /containers/c/attach?stream=1 HTTP/1.1\r\nHost: d\r\nUpgrade: tcp\r\n\r\n"
    for reads in ([attach + b"stdin"], [bytes([b]) for b in attach + b"stdin"]):
        g = gate()
        for read in reads:
            g.from_client(read)
        assert g.held == len(b"stdin")
        g.from_daemon(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\n\r\n")
        assert g.raw and g.held == 0


def test_what_follows_a_denial_that_closes_is_dropped_once_it_is_answered() -> None:
    # Denied on its head before its body has come, the request closes the connection: its body
    # waits with the denial (counted), and is dropped with it, never decided.
    delete = b"DELETE /containers/c HTTP/1.1\r\nHost: d\r\nContent-Length: 99\r\n\r\n"
    g = gate()
    actions = g.from_client(PING + delete + b"part of")
    assert forwarded(actions) == PING and answers(actions) == []
    assert g.held == 0  # the rest of the read it was denied in goes with it
    assert g.from_client(b" the body" + PING) == []
    assert g.held == len(b" the body" + PING)
    (answer,) = answers(actions := g.from_daemon(PONG))
    assert answer.close and b"denied DELETE /containers/c" in answer.data
    assert forwarded(actions) == b"" and g.held == 0
    assert g.from_client(PING) == []


def test_a_response_head_that_never_ends_leaves_denials_answered_at_once() -> None:
    g = gate()
    assert answers(g.from_client(PING + create(b'{"Image":"alpine"}'))) == []
    assert g.from_daemon(b"HTTP/1.1 200 OK\r\n") == []
    actions = g.from_daemon(b"X-Filler: " + b"x" * MAX_HEAD_SIZE)
    (answer,) = answers(actions)  # past the bound, as the observer gives up on such a head
    assert b"image alpine not allowed" in answer.data


def test_the_body_of_a_request_that_may_hijack_goes_on_before_the_daemon_answers() -> None:
    # Any request may offer an Upgrade; one with a body that needs no reading (an upload) was
    # held from its first read's end until the daemon said whether it hijacked, which a daemon
    # reading that body never did. Its body streams on; then the gate waits for the answer.
    upload = (
        b"PUT /containers/c/archive?path=/ HTTP/1.1\r\nHost: d\r\nUpgrade: tcp\r\n"
        b"Connection: Upgrade\r\nContent-Length: 6\r\n\r\n"
    )
    for then, raw in (
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 101 UPGRADED\r\n\r\n", True),
    ):
        g = gate()
        assert forwarded(g.from_client(upload + b"abc")) == upload + b"abc"
        assert forwarded(g.from_client(b"def")) == b"def"
        assert g.from_client(PING) == [] and g.held == len(PING)  # until the daemon has answered
        actions = g.from_daemon(then)
        assert forwarded(actions) == PING and g.raw is raw and g.held == 0
    g = gate()
    g.from_client(upload + b"abc")
    g.from_daemon(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # before the body's end
    assert forwarded(g.from_client(b"def" + PING)) == b"def" + PING and not g.raw


def _split(stream: bytes, whole: bool) -> list[bytes]:
    return [stream] if whole else [bytes([b]) for b in stream]


def test_the_clients_end_of_input_goes_on_before_the_denials_owed_to_it() -> None:
    # The client pipelines a request the daemon answers slowly (a long poll), two denials,
    # then half-closes. The half-close went on only once the daemon had answered and the 403s
    # were out; but Go's server ends a long poll when its client's input ends, so the client
    # waited for ever. Nothing after the poll is owed to the daemon: the end of input goes now,
    # and the denials queue behind the poll, decided and answered in their turn.
    denied = create(b'{"Image":"alpine"}')
    stream = PING + denied + DENIED[2]
    for whole in (True, False):
        g = gate()
        actions = [a for read in _split(stream, whole) for a in g.from_client(read)]
        assert forwarded(actions) == PING and answers(actions) == []
        assert [a.seq for a in actions if isinstance(a, Decided)] == [1, 2]
        at_end = g.client_eof()
        assert at_end[-1] == EndOfInput() and answers(at_end) == []
        assert [(a.seq, a.decision.allowed) for a in at_end if isinstance(a, Decided)] == [
            (3, False)
        ]
        assert g.held == 0
        then = g.from_daemon(PONG)
        first, second = answers(then)
        assert b"image alpine not allowed" in first.data and not first.close
        assert b"denied DELETE /containers/c" in second.data
        assert then == [first, second]  # no end of input again, nothing forwarded
        assert g.from_daemon(PONG) == []


def test_the_end_of_input_waits_for_an_allowed_request_behind_a_denial() -> None:
    # What the daemon is owed goes first: a request the policy allows, held behind a denial,
    # reaches the daemon before the end of input does.
    stream = PING + create(b'{"Image":"alpine"}') + create(b'{"Image":"bb"}')
    for whole in (True, False):
        g = gate()
        for read in _split(stream, whole):
            g.from_client(read)
        assert g.client_eof() == []
        then = g.from_daemon(PONG)
        (answer,) = answers(then)
        assert then.index(answer) == 0
        assert forwarded(then) == create(b'{"Image":"bb"}') and then[-1] == EndOfInput()


def test_the_end_of_input_goes_at_once_behind_a_denial_that_closes() -> None:
    # What follows a denial that closes is never read: nothing more is owed to the daemon.
    stream = PING + create(b'{"Image":"alpine"}', b"1.0") + PING
    for whole in (True, False):
        g = gate()
        for read in _split(stream, whole):
            g.from_client(read)
        assert g.client_eof() == [EndOfInput()]
        then = g.from_daemon(PONG)
        (answer,) = answers(then)
        assert answer.close and then == [answer]


def test_the_end_of_input_goes_on_while_a_hijack_is_undecided_with_nothing_after_it() -> None:
    attach = b"POST /containers/c/attach?stream=1 HTTP/1.1\r\nHost: d\r\nUpgrade: tcp\r\n\r\n"
    for answer, raw in ((b"HTTP/1.1 101 UPGRADED\r\n\r\n", True), (PONG, False)):
        g = gate()
        g.from_client(attach)
        assert g.client_eof() == [EndOfInput()]
        assert g.from_daemon(answer) == [] and g.raw is raw  # and only once
    g = gate()
    g.from_client(attach + b"stdin")  # the stdin goes raw or is decided: it goes first
    assert g.client_eof() == []
    assert g.from_daemon(b"HTTP/1.1 101 UPGRADED\r\n\r\n") == [Forward(b"stdin"), EndOfInput()]


def test_once_the_daemon_has_closed_nothing_more_is_decided_or_answered() -> None:
    # The relay ends the client's side with the daemon's: an answer after it cannot be written.
    g = gate()
    g.from_client(PING + DENIED[2])
    g.daemon_eof()
    assert g.from_client(DENIED[2] + PING) == [] and g.client_eof() == [] and g.held == 0
    g = gate(enforce=False)
    g.daemon_eof()
    assert g.from_client(DENIED[2]) == []


def test_a_head_past_the_bound_behind_a_denial_is_refused_at_the_clients_end() -> None:
    # What the client's end has decided behind a queued denial is held to the gate's bounds
    # as any other read: a head longer than MAX_HEAD_SIZE is refused, and closes.
    long_head = b"GET /_ping HTTP/1.1\r\nX-Filler: " + b"x" * MAX_HEAD_SIZE
    stream = PING + DENIED[2] + long_head
    for reads in (
        [stream],
        [stream[at : at + (64 << 10)] for at in range(0, len(stream), 64 << 10)],
    ):
        g = gate()
        for read in reads:
            g.from_client(read)
        at_end = g.client_eof()
        assert at_end[-1] == EndOfInput() and g.held == 0
        assert [a.seq for a in at_end if isinstance(a, Decided)] == [None]
        denial, refusal = answers(g.from_daemon(PONG))
        assert not denial.close and b"denied DELETE /containers/c" in denial.data
        assert refusal.close and f"longer than {MAX_HEAD_SIZE} bytes".encode() in refusal.data


_CLOSING = create(b'{"Image":"alpine"}', b"1.0")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([PING, *DENIED[1:], _CLOSING]), min_size=1, max_size=6),
    st.lists(st.integers(min_value=0), max_size=8),
    st.lists(st.integers(min_value=0, max_value=3), max_size=8),
)
def test_whenever_the_client_ends_and_the_daemon_answers_everything_comes_in_its_turn(
    requests: list[bytes], cuts: list[int], answered: list[int]
) -> None:
    # Pings (allowed), denials and a denial that closes, read in any cuts, the daemon
    # answering a few pings after each read, then the client's end, then the rest of the
    # answers: the daemon gets each ping before the end of input and nothing after it, and
    # the client each 403 once the pings before it are answered, in order, up to the first
    # that closes.
    g = gate()
    last = next((i for i, r in enumerate(requests) if r is _CLOSING), len(requests) - 1)
    kept = requests[: last + 1]
    log: list[str] = []  # what the gate asked for, in order
    sent = bytearray()  # what it forwarded
    answered_then: list[int] = []  # the pings answered when each 403 went
    pongs = 0

    def run(actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Forward):
                log.append("forward")
                sent.extend(action.data)
            elif isinstance(action, Answer):
                log.append("answer")
                answered_then.append(pongs)
            elif isinstance(action, EndOfInput):
                log.append("end")

    def answer(count: int) -> None:
        nonlocal pongs
        for _ in range(count):
            if pongs < forwarded_pings():
                pongs += 1
                run(g.from_daemon(PONG))

    def forwarded_pings() -> int:
        return bytes(sent).count(PING)

    reads = _cut(b"".join(requests), cuts)
    for at, read in enumerate(reads):
        run(g.from_client(read))
        answer(answered[at] if at < len(answered) else 0)
    run(g.client_eof())
    answer(len(requests))
    assert log.count("end") <= 1
    ended = log.index("end") if "end" in log else len(log)
    assert "forward" not in log[ended:]  # nothing reaches the daemon after its input ends
    assert sent == PING * kept.count(PING)
    if _CLOSING not in kept:
        assert "end" in log
    # Each 403 in order, once every ping before its request was answered.
    assert answered_then == [kept[:i].count(PING) for i, r in enumerate(kept) if r is not PING]

"""The replay store: which recording answers a request, and when each piece of it may go."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from synthetic import capture_of, given_up_wait

from docktap import load
from docktap.capture.reader import Capture, Exchange, loads
from docktap.replay.match import MatchOptions, Request
from docktap.replay.script import Recording, scripts
from docktap.replay.store import DEFAULT_REPEAT, Miss, Play, Store, build_store, parse_repeat

CAPTURES = Path(__file__).parent.parent / "captures"


def _capture(name: str) -> Capture:
    return load(CAPTURES / name)


def _recordings(name: str, source: str | None = None) -> list[Recording]:
    return scripts(_capture(name), source or name)


def _named(store: Store) -> dict[str, Recording]:
    """The recordings of a single docker command, by operation."""
    named = {r.exchange.operation or "": r for r in store.recordings}
    assert len(named) == len(store.recordings)
    return named


def _request(ex: Exchange) -> Request:
    """The request exactly as the client sent it when recorded."""
    return Request.of(ex.method, ex.target, bytes(ex.request_body))


def _play(store: Store, recording: Recording) -> Play:
    """The store's answer to the recorded request of `recording`, which must be a first play."""
    result = store.match(_request(recording.exchange))
    assert isinstance(result, Play), result
    assert result.recording is recording
    assert result.first
    return result


def _miss(result: Play | Miss) -> Miss:
    assert isinstance(result, Miss), result
    return result


# --- which recording answers ------------------------------------------------------------


def test_each_recorded_request_gets_its_recording() -> None:
    store = build_store(_recordings("run.jsonl"))
    assert not store.several_sources
    assert store.unused() == store.recordings[1:]  # all but the ping
    for recording in store.recordings:
        play = _play(store, recording)
        assert play.sent == 0
        assert play.next_piece is recording.pieces[0]
        assert not play.finished
    assert store.unused() == []
    assert store.misses == []


def test_a_post_is_answered_once_per_recording() -> None:
    store = build_store(_recordings("run.jsonl"))
    start = _named(store)["ContainerStart"]
    _play(store, start)
    miss = _miss(store.match(_request(start.exchange)))
    assert miss.closest is start
    assert miss.label == "#5"
    assert miss.reasons == ("recorded 1 time, all played",)
    assert miss.message == (
        f"docktap replay: no recorded exchange for POST {start.exchange.path}; "
        "closest: #5, recorded 1 time, all played"
    )
    assert store.misses == [miss]


def test_a_get_repeats_its_last_answer() -> None:
    store = build_store(_recordings("docker-py.jsonl"))
    version = store.recordings[0]
    assert version.exchange.target == "/version"
    _play(store, version)
    again = store.match(_request(version.exchange))
    assert isinstance(again, Play)
    assert again.recording is version
    assert not again.first
    third = store.match(Request.of("GET", "/version", b""))
    assert isinstance(third, Play)
    assert not third.first
    assert store.misses == []


def test_identical_requests_get_their_recordings_in_recorded_order() -> None:
    store = build_store(_recordings("docker-py.jsonl"))
    inspects = [r for r in store.recordings if r.exchange.operation == "ContainerInspect"]
    first, second = inspects[:2]
    assert first.exchange.target == second.exchange.target
    assert first.exchange.response_body != second.exchange.response_body  # the state moved on
    assert first.number < second.number
    _play(store, first)
    _play(store, second)
    last = store.match(_request(first.exchange))
    assert isinstance(last, Play)
    assert last.recording is second
    assert not last.first
    assert store.unused() == [r for r in store.recordings if r not in (first, second)]


def test_identical_requests_across_connections_are_one_queue() -> None:
    """Which connection a request comes on does not matter, only the order of identical ones."""
    store = build_store(_recordings("run.jsonl") + _recordings("run.jsonl", "run-again.jsonl"))
    assert store.several_sources
    creates = [r for r in store.recordings if r.exchange.operation == "ContainerCreate"]
    assert [r.source for r in creates] == ["run.jsonl", "run-again.jsonl"]
    assert [store.label(r) for r in creates] == ["run.jsonl#2", "run-again.jsonl#2"]
    _play(store, creates[0])
    _play(store, creates[1])
    miss = _miss(store.match(_request(creates[0].exchange)))
    assert miss.closest is creates[0]
    assert miss.message == (
        "docktap replay: no recorded exchange for POST /v1.41/containers/create; "
        "closest: run.jsonl#2, recorded 2 times, all played"
    )


def _two_tests() -> Store:
    """Two tests, one after the other: each creates its container, then lists containers."""
    create = {"Image": "bb", "Cmd": ["true"]}
    return build_store(
        scripts(
            capture_of(
                ("ContainerCreate", "POST", "/v1.41/containers/create?name=one", create),
                ("ContainerList", "GET", "/v1.41/containers/json?all=1", None),
                ("ContainerCreate", "POST", "/v1.41/containers/create?name=two", create),
                ("ContainerList", "GET", "/v1.41/containers/json?all=1", None),
            ),
            "tests.jsonl",
        )
    )


def test_a_miss_leaves_no_answer_to_the_requests_after_it() -> None:
    """The first test's set-up missed, so it never listed: the second test's list gets the
    second test's answer, not the one the first test left."""
    store = _two_tests()
    _, list_one, create_two, list_two = store.recordings
    _miss(store.match(Request.of("POST", "/v1.41/containers/create?name=other", b"{}")))
    assert _play(store, create_two)
    assert _play(store, list_two)
    # The one passed over is still there, for a test that asks for it after all.
    assert _play(store, list_one)
    assert store.unused() == [store.recordings[0]]


def test_without_a_miss_identical_requests_keep_their_recorded_order() -> None:
    """A client may make independent calls in another order than recorded."""
    store = _two_tests()
    create_one, list_one, create_two, list_two = store.recordings
    _play(store, create_one)
    _play(store, create_two)
    assert _play(store, list_one) and _play(store, list_two)


def test_a_miss_that_did_not_stop_its_test_leaves_it_its_answers() -> None:
    store = _two_tests()
    create_one, list_one, create_two, list_two = store.recordings
    _play(store, create_one)
    _miss(store.match(Request.of("GET", "/v1.41/info", b"")))
    assert _play(store, list_one)
    assert _play(store, create_two) and _play(store, list_two)


def test_labels_name_the_source_only_with_several() -> None:
    one = build_store(_recordings("run.jsonl"))
    assert [one.label(r) for r in one.recordings] == ["#1", "#2", "#3", "#4", "#5"]
    two = build_store(_recordings("run.jsonl") + _recordings("version.jsonl"))
    assert two.label(two.recordings[1]) == "run.jsonl#2"
    assert two.label(two.recordings[-1]).startswith("version.jsonl#")


def test_requests_match_as_match_options_say() -> None:
    store = build_store(_recordings("run.jsonl"))
    wait = _named(store)["ContainerWait"]
    target = wait.exchange.target.replace("/v1.41/", "/v1.43/")
    play = store.match(Request.of("POST", target, b""))
    assert isinstance(play, Play)
    assert play.recording is wait
    exact = build_store(_recordings("run.jsonl"), MatchOptions(exact_version=True))
    miss = _miss(exact.match(Request.of("POST", target, b"")))
    assert miss.closest is _named(exact)["ContainerWait"]
    assert miss.reasons == (f"path differs ({wait.exchange.path})",)


# --- pings ------------------------------------------------------------------------------


def _get_ping_capture() -> Capture:
    """run.jsonl as if its client had pinged with GET (its answer says OK)."""
    text = (CAPTURES / "run.jsonl").read_text()
    pinged = text.replace('"method":"HEAD","target":"/_ping"', '"method":"GET","target":"/_ping"')
    assert pinged != text
    return loads(pinged)


def test_a_ping_is_answered_whatever_the_method() -> None:
    store = build_store(_recordings("run.jsonl"))
    ping = store.recordings[0]
    assert (ping.exchange.method, ping.exchange.target) == ("HEAD", "/_ping")
    _play(store, ping)
    for method, target in [("GET", "/_ping"), ("HEAD", "/_ping"), ("GET", "/v1.43/_ping")]:
        play = store.match(Request.of(method, target, b""))
        assert isinstance(play, Play), (method, target)
        assert play.recording is ping
        assert not play.first
    _miss(store.match(Request.of("POST", "/_ping", b"")))
    _miss(store.match(Request.of("GET", "/_pong", b"")))


def test_a_ping_is_answered_even_when_nothing_repeats() -> None:
    recordings = _recordings("run.jsonl") + scripts(_get_ping_capture(), "get-ping.jsonl")
    store = build_store(recordings, repeat=frozenset())
    head_ping, get_ping = (r for r in store.recordings if r.exchange.path == "/_ping")
    assert (head_ping.exchange.method, get_ping.exchange.method) == ("HEAD", "GET")
    # The recording of the same method answers, first as itself, then as any ping does.
    for _ in range(3):
        for method, recording in [("GET", get_ping), ("HEAD", head_ping), ("GET", get_ping)]:
            play = store.match(Request.of(method, "/_ping", b""))
            assert isinstance(play, Play)
            assert play.recording is recording
    assert store.misses == []


def test_a_ping_of_a_method_never_recorded_gets_the_last_ping() -> None:
    store = build_store(scripts(_get_ping_capture(), "get-ping.jsonl"))
    play = store.match(Request.of("HEAD", "/_ping", b""))
    assert isinstance(play, Play)
    assert play.recording is store.recordings[0]
    assert play.recording.exchange.method == "GET"
    assert not play.first


# --- misses -----------------------------------------------------------------------------


def _create_with_cmd(store: Store, command: str) -> Request:
    create = _named(store)["ContainerCreate"]
    body = orjson.loads(bytes(create.exchange.request_body))
    body["Cmd"][2] = command
    return Request.of("POST", create.exchange.target, orjson.dumps(body))


def test_a_miss_names_the_closest_recording_and_the_first_difference() -> None:
    store = build_store(_recordings("run.jsonl"))
    miss = _miss(store.match(_create_with_cmd(store, "echo other")))
    assert miss.message == (
        "docktap replay: no recorded exchange for POST /v1.41/containers/create; "
        'closest: #2, body differs at $.Cmd[2]: recorded "echo out; echo err >&2; exit 3", '
        'got "echo other"'
    )
    assert miss.closest is _named(store)["ContainerCreate"]
    assert miss.reasons == (
        'body differs at $.Cmd[2]: recorded "echo out; echo err >&2; exit 3", got "echo other"',
    )
    assert store.misses == [miss]
    # A miss uses nothing up.
    assert store.unused() == store.recordings[1:]
    _play(store, _named(store)["ContainerCreate"])


def test_a_miss_message_gives_two_reasons_at_most() -> None:
    store = build_store(_recordings("run.jsonl"))
    request = _create_with_cmd(store, "echo other")
    put = Request.of("PUT", request.target + "?name=web", request.body or b"")
    miss = _miss(store.match(put))
    assert miss.reasons[:2] == (
        "method differs (POST)",
        'query name differs: recorded absent, got "web"',
    )
    assert (
        'body differs at $.Cmd[2]: recorded "echo out; echo err >&2; exit 3", got "echo other"'
        in miss.reasons
    )
    assert miss.message == (
        "docktap replay: no recorded exchange for PUT /v1.41/containers/create; "
        'closest: #2, method differs (POST), query name differs: recorded absent, got "web"'
    )


def test_a_miss_of_an_operation_never_recorded_names_no_closest_and_says_why() -> None:
    """The docker CLI 20.10's `stats` asks for /version, which 28's never does: no recording
    of another operation is any closer, and dockerd's answer is not in the capture."""
    store = build_store(_recordings("run.jsonl"))
    miss = _miss(store.match(Request.of("GET", "/v1.41/version", b"")))
    assert miss.closest is None
    assert miss.message == (
        "docktap replay: no recorded exchange for GET /v1.41/version: the capture holds no "
        "SystemVersion at all: the client recorded never asked for it (another client, or "
        "another version of it, asks for other things: record with the client that replays)"
    )
    two = build_store(_recordings("run.jsonl", "a.jsonl") + _recordings("run.jsonl", "b.jsonl"))
    message = _miss(two.match(Request.of("GET", "/version", b""))).message
    assert "the captures hold no SystemVersion at all" in message
    # An operation recorded, asked otherwise: the closest is still named.
    wait = _named(store)["ContainerWait"]
    other = Request.of("POST", wait.exchange.path + "?condition=next-exit", b"")
    assert _miss(store.match(other)).closest is wait


def test_a_miss_with_nothing_recorded() -> None:
    store = build_store([])
    miss = _miss(store.match(Request.of("GET", "/v1.41/version?x=1", b"")))
    assert miss.closest is None
    assert miss.message == "docktap replay: no recorded exchange for GET /v1.41/version"
    assert store.misses == [miss]


# --- repeats ----------------------------------------------------------------------------


def test_by_default_only_get_and_head_repeat() -> None:
    assert frozenset({"GET", "HEAD"}) == DEFAULT_REPEAT
    store = build_store(_recordings("docker-py.jsonl"))
    delete = next(r for r in store.recordings if r.exchange.method == "DELETE")
    _play(store, delete)
    _miss(store.match(_request(delete.exchange)))


def test_repeat_none_repeats_every_method() -> None:
    store = build_store(_recordings("run.jsonl"), repeat=None)
    for recording in store.recordings:
        _play(store, recording)
        for _ in range(2):
            again = store.match(_request(recording.exchange))
            assert isinstance(again, Play)
            assert again.recording is recording
            assert not again.first
    assert store.misses == []


def test_repeat_nothing() -> None:
    store = build_store(_recordings("docker-py.jsonl"), repeat=frozenset())
    version = store.recordings[0]
    _play(store, version)
    miss = _miss(store.match(_request(version.exchange)))
    assert miss.reasons == ("recorded 1 time, all played",)


def test_repeat_chosen_methods() -> None:
    store = build_store(_recordings("run.jsonl"), repeat=frozenset({"POST"}))
    start = _named(store)["ContainerStart"]
    _play(store, start)
    again = store.match(_request(start.exchange))
    assert isinstance(again, Play)
    assert not again.first


def test_unused_lists_recordings_never_played_in_capture_order() -> None:
    store = build_store(_recordings("run.jsonl"))
    named = _named(store)
    _play(store, named["ContainerStart"])
    _play(store, named["SystemPingHead"])
    store.match(Request.of("GET", "/nothing", b""))
    assert [r.number for r in store.unused()] == [2, 3, 4]


def test_pings_are_never_unused() -> None:
    """How often a client negotiates is its own business."""
    store = build_store(_recordings("run.jsonl") + _recordings("cp.jsonl"))
    pings = [r for r in store.recordings if r.exchange.path == "/_ping"]
    assert len(pings) == 3
    assert not any(any(u is p for p in pings) for u in store.unused())
    assert len(store.unused()) == len(store.recordings) - 3


def test_a_ping_is_made_up_when_none_was_recorded() -> None:
    """docker-py asks /version instead: a ping says the capture's API version."""
    store = build_store(_recordings("docker-py.jsonl"))
    assert not any(r.exchange.path == "/_ping" for r in store.recordings)
    for method, body in [("HEAD", b""), ("GET", b"OK")]:
        play = store.match(Request.of(method, "/_ping", b""))
        assert isinstance(play, Play)
        assert not play.first
        assert play.recording not in store.recordings
        assert play.recording.exchange.method == method
        assert play.recording.head is not None
        assert ("Api-Version", "1.41") in play.recording.head.headers
        assert [p.kind for p in play.recording.pieces] == ["head", "body"]
        assert play.recording.pieces[1].data == body
        assert store.ready(play)
    assert store.misses == []
    assert _miss(store.match(Request.of("POST", "/_ping", b""))).closest is not None


# --- cut request bodies -----------------------------------------------------------------


def _cut_create_body(keep: int) -> Capture:
    """run.jsonl as recorded with --max-body `keep`: the create body kept only in part."""
    out = []
    for line in (CAPTURES / "run.jsonl").read_bytes().splitlines():
        record = orjson.loads(line)
        if record["type"] == "capture":
            record["max_body"] = keep
        create = (record.get("conn"), record.get("seq"), record.get("dir")) == (1, 2, "client")
        if create and record["type"] == "body":
            record["text"], record["size"] = record["text"][:keep], keep
        if create and record["type"] == "end":
            record["inline"] = keep
        out.append(orjson.dumps(record) + b"\n")
    return loads(b"".join(out))


def test_a_request_body_cut_in_the_capture_matches_by_its_digest() -> None:
    """A JSON body past the capture's cap is matched by its sha256: the same bytes match."""
    store = build_store(scripts(_cut_create_body(1000), "cut.jsonl"))
    create = _named(store)["ContainerCreate"]
    assert len(create.exchange.request_body) == 1000 < create.exchange.request_body_size
    whole = _capture("run.jsonl").exchanges[1]
    assert whole.operation == "ContainerCreate"
    assert len(whole.request_body) == whole.request_body_size == 1508
    play = store.match(_request(whole))
    assert isinstance(play, Play), play
    assert play.recording is create
    assert play.first
    # Played once: the same bytes again are a miss that says so.
    miss = _miss(store.match(_request(whole)))
    assert miss.reasons == ("recorded 1 time, all played",)
    # Other bytes, even the same JSON written otherwise, cannot be told apart from a change.
    body = orjson.loads(bytes(whole.request_body))
    respaced = Request.of("POST", whole.target, orjson.dumps(body, option=orjson.OPT_INDENT_2))
    assert _miss(store.match(respaced)).closest is create


# --- when each piece may go: docker run -----------------------------------------------------


@pytest.fixture
def run_store() -> Store:
    return build_store(_recordings("run.jsonl"))


def test_a_head_with_nothing_before_it_is_ready(run_store: Store) -> None:
    named = _named(run_store)
    for operation in ("SystemPingHead", "ContainerCreate"):
        play = _play(run_store, named[operation])
        assert run_store.ready(play)
        play.sent = len(play.recording.pieces)
        assert play.finished
        assert not run_store.ready(play)  # nothing left to send


def test_attach_output_waits_for_the_start_request(run_store: Store) -> None:
    named = _named(run_store)
    attach = _play(run_store, named["ContainerAttach"])
    assert run_store.ready(attach)  # the 101 head
    attach.sent = 1
    attach.client_halfclosed = True  # as recorded: no -i, stdin closed at once
    assert attach.next_piece is not None
    assert attach.next_piece.kind == "stream"
    assert not run_store.ready(attach)  # the wait and the start were asked for before it
    wait = _play(run_store, named["ContainerWait"])
    assert run_store.ready(wait)
    wait.sent = 1
    assert not run_store.ready(attach)
    _play(run_store, named["ContainerStart"])
    assert run_store.ready(attach)


def test_attach_output_waits_for_the_clients_half_close(run_store: Store) -> None:
    named = _named(run_store)
    attach = _play(run_store, named["ContainerAttach"])
    attach.sent = 1
    _play(run_store, named["ContainerWait"]).sent = 1
    _play(run_store, named["ContainerStart"])
    assert not run_store.ready(attach)
    attach.client_halfclosed = True
    assert run_store.ready(attach)


def test_the_wait_head_comes_after_the_attach_head(run_store: Store) -> None:
    named = _named(run_store)
    attach = _play(run_store, named["ContainerAttach"])
    wait = _play(run_store, named["ContainerWait"])
    assert not run_store.ready(wait)
    attach.sent = 1
    assert run_store.ready(wait)


def test_a_related_exchange_never_asked_for_blocks(run_store: Store) -> None:
    """Without the attach, the wait's answer would come before the client could see output."""
    wait = _play(run_store, _named(run_store)["ContainerWait"])
    assert not run_store.ready(wait)
    # Unless the server gave up waiting for a call the client may never make.
    assert run_store.ready(wait, lenient=True)


def test_lenient_still_waits_for_related_plays_under_way(run_store: Store) -> None:
    named = _named(run_store)
    attach = _play(run_store, named["ContainerAttach"])
    wait = _play(run_store, named["ContainerWait"])
    assert not run_store.ready(wait, lenient=True)  # the attach's head goes first
    attach.sent = 1
    assert run_store.ready(wait, lenient=True)
    wait.sent = 1
    attach.client_halfclosed = True
    assert run_store.ready(attach, lenient=True)  # the start never came: go anyway
    assert not run_store.ready(attach)
    attach.client_halfclosed = False
    assert not run_store.ready(attach, lenient=True)  # but the client's own marks still hold


def test_the_exit_status_waits_for_the_attach_stream_to_end(run_store: Store) -> None:
    named = _named(run_store)
    attach = _play(run_store, named["ContainerAttach"])
    wait = _play(run_store, named["ContainerWait"])
    start = _play(run_store, named["ContainerStart"])
    attach.client_halfclosed = True
    attach.sent = 1
    wait.sent = 1
    assert not run_store.ready(start)  # the 204 came after the output
    attach.sent = 3
    assert run_store.ready(start)
    start.sent = 1
    assert wait.next_piece is not None
    assert wait.next_piece.kind == "body"
    kinds = [p.kind for p in attach.recording.pieces]
    assert kinds == ["head", "stream", "stream", "halfclose", "close"]
    for sent in range(3, len(kinds)):
        attach.sent = sent
        assert not run_store.ready(wait), kinds[sent]
    attach.sent = len(kinds)
    assert run_store.ready(wait)


def test_the_exit_status_waits_for_the_start_answer(run_store: Store) -> None:
    named = _named(run_store)
    attach = _play(run_store, named["ContainerAttach"])
    wait = _play(run_store, named["ContainerWait"])
    start = _play(run_store, named["ContainerStart"])
    attach.sent = len(attach.recording.pieces)
    wait.sent = 1
    assert not run_store.ready(wait)
    start.sent = 1
    assert run_store.ready(wait)


def test_a_client_gone_no_longer_blocks_related_plays(run_store: Store) -> None:
    named = _named(run_store)
    attach = _play(run_store, named["ContainerAttach"])
    wait = _play(run_store, named["ContainerWait"])
    start = _play(run_store, named["ContainerStart"])
    attach.sent = 1
    wait.sent = 1
    assert not run_store.ready(start)
    attach.client_gone = True  # the attaching client left before its output
    assert run_store.ready(start)
    start.sent = 1
    assert run_store.ready(wait)
    assert run_store.ready(attach)  # its own client's marks no longer hold it either


def test_a_repeated_play_is_always_ready() -> None:
    store = build_store(_recordings("run.jsonl"), repeat=None)
    wait = _named(store)["ContainerWait"]
    _play(store, wait)
    again = store.match(_request(wait.exchange))
    assert isinstance(again, Play)
    assert not again.first
    for sent in range(len(wait.pieces)):
        again.sent = sent
        assert store.ready(again)
    again.sent = len(wait.pieces)
    assert not store.ready(again)


def test_plays_of_another_capture_do_not_count() -> None:
    """Two copies of a run: each attach waits on the start of its own copy."""
    store = build_store(_recordings("run.jsonl") + _recordings("run.jsonl", "run-again.jsonl"))
    named = {r.exchange.operation: r for r in store.recordings if r.source == "run.jsonl"}

    def play(operation: str | None, source: str) -> Play:
        result = store.match(_request(named[operation].exchange))
        assert isinstance(result, Play)
        assert result.first
        assert result.recording.source == source
        return result

    attaches = [play("ContainerAttach", "run.jsonl"), play("ContainerAttach", "run-again.jsonl")]
    for attach in attaches:
        attach.sent = 1
        attach.client_halfclosed = True
    play("ContainerWait", "run.jsonl").sent = 1
    play("ContainerStart", "run.jsonl")
    assert store.ready(attaches[0])
    assert not store.ready(attaches[1])
    play("ContainerWait", "run-again.jsonl").sent = 1
    assert not store.ready(attaches[1])
    play("ContainerStart", "run-again.jsonl")
    assert store.ready(attaches[1])


# --- when each piece may go: stdin ------------------------------------------------------


@pytest.fixture
def stdin_plays() -> tuple[Store, Play]:
    """run-stdin.jsonl with the attach's head sent, and the wait and start asked for."""
    store = build_store(_recordings("run-stdin.jsonl"))
    named = _named(store)
    attach = _play(store, named["ContainerAttach"])
    assert store.ready(attach)  # the head needs no stdin
    attach.sent = 1
    _play(store, named["ContainerWait"]).sent = 1
    _play(store, named["ContainerStart"])
    return store, attach


def test_output_waits_for_the_recorded_stdin(stdin_plays: tuple[Store, Play]) -> None:
    store, attach = stdin_plays
    assert attach.next_piece is not None
    assert attach.next_piece.data.endswith(b"hello from stdin\n")
    sent = len(b"hello from stdin\n")
    for client_sent in (0, 1, sent - 1, sent):
        attach.client_sent = client_sent
        assert not store.ready(attach), client_sent  # all sent, but stdin not closed yet
    attach.client_halfclosed = True
    assert store.ready(attach)


def test_a_half_close_ends_the_wait_for_stdin(stdin_plays: tuple[Store, Play]) -> None:
    """Once the client closed its side no more will come: whatever it sent, output may go."""
    store, attach = stdin_plays
    attach.client_halfclosed = True
    assert attach.client_sent == 0
    assert store.ready(attach)


def test_a_client_gone_does_not_wait_for_stdin(stdin_plays: tuple[Store, Play]) -> None:
    store, attach = stdin_plays
    attach.client_sent = 3
    assert not store.ready(attach)
    attach.client_gone = True
    assert store.ready(attach)


# --- when each piece may go: a client that gave up -------------------------------------------


def test_an_answer_to_a_client_that_gave_up_waits_for_it_to_give_up() -> None:
    store = build_store(scripts(given_up_wait(), "wait.jsonl"))
    (recording,) = store.recordings
    wait = _play(store, recording)
    assert store.ready(wait)  # the head came before the client gave up
    wait.sent = 1
    assert not store.ready(wait)
    assert not store.ready(wait, lenient=True)  # it is the client's own doing: no stall ends it
    wait.client_halfclosed = True
    assert store.ready(wait)


def test_a_client_gone_gets_the_answer_given_up_on() -> None:
    store = build_store(scripts(given_up_wait(), "wait.jsonl"))
    wait = _play(store, store.recordings[0])
    wait.sent = 1
    wait.client_gone = True
    assert store.ready(wait)


def _echoing_stdin() -> Capture:
    """run-stdin.jsonl as if the client had closed stdin only after `cat` echoed its line."""
    lines = (CAPTURES / "run-stdin.jsonl").read_bytes().splitlines(keepends=True)
    (closed,) = (
        i
        for i, line in enumerate(lines)
        if line.startswith(b'{"type":"halfclose","conn":2,"dir":"client"')
    )
    (echoed,) = (i for i, line in enumerate(lines) if line.startswith(b'{"type":"frame","conn":2'))
    assert closed < echoed
    moved = lines[:closed] + lines[closed + 1 : echoed + 1] + [lines[closed]] + lines[echoed + 1 :]
    return loads(b"".join(moved))


def test_output_waits_for_the_stdin_it_echoes() -> None:
    store = build_store(scripts(_echoing_stdin(), "echo.jsonl"))
    named = _named(store)
    attach = _play(store, named["ContainerAttach"])
    assert [(m.sent, m.halfclosed) for m in attach.recording.client_marks] == [
        (17, False),
        (17, True),
    ]
    attach.sent = 1
    _play(store, named["ContainerWait"]).sent = 1
    start = _play(store, named["ContainerStart"])
    assert attach.next_piece is not None
    assert attach.next_piece.kind == "stream"
    for client_sent in (0, 1, 16):
        attach.client_sent = client_sent
        assert not store.ready(attach), client_sent
    attach.client_sent = 17
    assert store.ready(attach)  # the echo needs the line, not the end of stdin
    attach.sent = 2
    start.sent = 1  # the 204 came after the echo
    assert attach.next_piece is not None
    assert attach.next_piece.kind == "halfclose"
    assert not store.ready(attach)  # but cat ends only once stdin did
    attach.client_halfclosed = True
    assert store.ready(attach)


def test_repeat_is_parsed_the_same_from_the_option_and_the_marker() -> None:
    assert parse_repeat("GET,HEAD") == parse_repeat(("GET", "HEAD")) == DEFAULT_REPEAT
    assert parse_repeat("default") == parse_repeat(["default"]) == DEFAULT_REPEAT
    assert parse_repeat("all") is None and parse_repeat(["all"]) is None
    assert parse_repeat("none") == parse_repeat("") == parse_repeat([]) == frozenset()
    assert parse_repeat(" get , post,") == frozenset({"GET", "POST"})
    assert parse_repeat(["get", "Post"]) == frozenset({"GET", "POST"})

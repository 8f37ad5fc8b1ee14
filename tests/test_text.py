"""The renderers' shared text rules: sizes, durations, times, ids, fitting and folding."""

from __future__ import annotations

import pytest

from docktap.render import text


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0B"), (1, "1B"), (1023, "1023B"), (1024, "1.0K"), (1536, "1.5K"), (10240, "10K")],
)
def test_sizes(size: int, shown: str) -> None:
    assert text.format_size(size) == shown


def test_more_sizes_and_durations() -> None:
    assert text.format_size(3 << 20) == "3.0M"
    assert text.format_size((1 << 20) - 1) == "1.0M"
    assert text.format_size(5 << 40) == "5.0T"
    assert [text.format_duration(s) for s in (None, 0.0001, 0.9999, 1.5, 59.99, 61, 3700)] == [
        "open",
        "0.1ms",
        "999.9ms",
        "1.500s",
        "59.990s",
        "1m01s",
        "1h01m",
    ]
    for seconds in (0.99996, 59.99996):
        assert len(text.format_duration(seconds)) <= 7


def test_sizes_fit_five_characters_at_every_step() -> None:
    """The timeline's size columns and the stats tables rely on it."""
    for shift in range(0, 41):  # up to a thousand T
        for size in ((1 << shift) - 1, 1 << shift, (1 << shift) * 3 // 2, (1 << shift) * 1000):
            assert len(text.format_size(size)) <= 5, size


def test_offsets_times_and_plurals() -> None:
    assert text.format_offset(0.0166) == "0.017s"
    assert text.format_offset(125.0) == "125.000s"
    assert text.iso_time(1_764_281_528.3621) == "2025-11-27T22:12:08.362Z"
    assert text.clock_time(1_764_281_528.9) == "2025-11-27 22:12:08 UTC"
    assert [text.plural(n, "exchange") for n in (0, 1, 2)] == [
        "0 exchanges",
        "1 exchange",
        "2 exchanges",
    ]


def test_long_ids_are_cut_to_twelve() -> None:
    full = "e2f981d5cba0" + "a" * 52
    assert text.shorten_ids(f"/containers/{full}/wait") == "/containers/e2f981d5cba0/wait"
    assert text.shorten_ids(f"/x/{full}0") == f"/x/{full}0"  # 65 hex: not an id
    assert text.shorten_ids("/containers/e2f981d5cba0/wait") == "/containers/e2f981d5cba0/wait"


def test_terminal_escapes_in_output_are_dropped_and_controls_escaped() -> None:
    assert text.clean("\x1b[31mred\x1b[0m \x1b]0;title\x07ok") == "red ok"
    assert text.clean("a\x00b\x08c\x9bd") == "a\\x00b\\x08c\\x9bd"
    assert text.clean("tab\there") == "tab     here"
    assert text.text_lines(b"one\r\ntwo\n\xffthree") == ["one", "two", "\ufffdthree"]


def test_text_or_hex_is_one_rule() -> None:
    assert text.is_text(b"plain\r\n") and text.is_text("日本 \ufffd".encode())
    assert text.is_text(b"\x1b[A\x03")  # keys typed in a TTY: controls, but text
    assert text.is_text("日本".encode()[:-1])  # a character cut by the capture's cap, at the end
    assert not text.is_text("日本".encode()[:-1] + b"x")  # cut in the middle: not UTF-8
    assert not text.is_text(b"\xff\xfe")
    assert not text.is_text(b"ab\x00cd")  # valid UTF-8, but NUL means binary
    assert text.hex_preview(b"\x00A\xff") == ["00000000  " + "00 41 ff".ljust(47) + "  |.A.|"]
    assert text.hex_preview(bytes(2000))[4:] == ["… 1.9K more"]
    assert len(text.hex_preview(bytes(64))) == 4


def test_wide_characters_fit_their_cells() -> None:
    assert text.fit("日本語のテキスト", 7) == "日本語…"
    assert text.pad("日本", 6) == "日本  "
    assert text.fold("日本語", 4) == ["日本", "語"]
    assert text.width_of("日本") == 4
    assert text.width_of("ab") == 2


def test_fitting_ascii() -> None:
    assert text.fit("x" * 100, 10) == "x" * 9 + "…"
    assert text.fit("short", 10) == "short"
    assert text.fit("anything", 0) == ""
    assert text.pad("ab", 4) == "ab  "
    assert text.pad("abcdef", 4) == "abc…"
    assert text.fold("abcdefg", 3) == ["abc", "def", "g"]
    assert text.fold("abc", 0) == ["abc"]


def test_fold_breaks_after_a_space_and_cuts_only_a_word_longer_than_a_line() -> None:
    value = "> User-Agent: Docker-Client/28.2.2 (linux)"
    pieces = text.fold(value, 38)
    assert pieces == ["> User-Agent: Docker-Client/28.2.2 ", "(linux)"]
    assert "".join(pieces) == value  # nothing lost, the space included
    assert text.fold("a " + "x" * 7, 4) == ["a ", "xxxx", "xxx"]
    assert text.fold("日本 語の", 5) == ["日本 ", "語の"]


def test_wrap_breaks_at_spaces_and_shortens_a_word_longer_than_a_line() -> None:
    assert text.wrap("one two three", 8, "", "  ") == ["one two", "  three"]
    assert text.wrap("see /a/very/long/path/indeed", 12, "- ", "  ") == ["- see", "  /a/very/l…"]
    assert all(len(line) <= 12 for line in text.wrap("x" * 40, 12))
    assert text.wrap("", 10) == []

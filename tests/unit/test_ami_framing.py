"""AMI framing on bytes: splits anywhere (inside a UTF-8 character too), batches, order."""

from __future__ import annotations

from panoramisk.ami_protocol import AMIProtocol

from pbx.ami.framing import AmiFramer, parse_message

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
NAME = "Петрова Анна Сергеевна"


def event(n: int, name: str = NAME) -> bytes:
    return (
        f"Event: Newchannel\r\nChannel: PJSIP/operator-{n:08x}\r\nCallerIDNum: 7916123456{n % 10}\r\n"
        f"CallerIDName: {name}\r\nUniqueid: 1700000000.{n}\r\nLinkedid: 1700000000.{n}\r\n\r\n"
    ).encode()


STREAM = BANNER + b"Response: Success\r\nActionID: a1\r\nMessage: Authentication accepted\r\n\r\n" + b"".join(
    event(i) for i in range(5)
)


def feed_chunks(chunks: list[bytes]) -> tuple[AmiFramer, list]:
    framer = AmiFramer()
    out = []
    for c in chunks:
        out.extend(framer.feed(c))
    return framer, out


def test_whole_stream_in_one_read() -> None:
    framer, msgs = feed_chunks([STREAM])
    assert framer.banner == "Asterisk Call Manager/11.0.0"
    assert [m.headers.get("Uniqueid") for m in msgs[1:]] == [f"1700000000.{i}" for i in range(5)]
    assert msgs[0].response == "Success"
    assert all(m.headers["CallerIDName"] == NAME for m in msgs[1:])
    assert framer.buffered == 0


def test_split_at_every_byte_offset() -> None:
    expected = feed_chunks([STREAM])[1]
    multibyte_cuts = 0
    for cut in range(1, len(STREAM)):
        left, right = STREAM[:cut], STREAM[cut:]
        try:
            left.decode()
        except UnicodeDecodeError:
            multibyte_cuts += 1
        _, msgs = feed_chunks([left, right])
        assert [m.headers for m in msgs] == [m.headers for m in expected], cut
    assert multibyte_cuts > 50  # the cuts really went through Cyrillic characters


def test_byte_by_byte() -> None:
    _, msgs = feed_chunks([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert len(msgs) == 6
    assert msgs[-1].headers["CallerIDName"] == NAME


def test_panoramisk_corrupts_the_same_split() -> None:
    """The defect we guard against, shown on panoramisk's own protocol."""
    data = event(1)
    cut = data.index(NAME.encode()) + 1  # inside the first character
    got = []

    class Factory:
        def dispatch(self, message):
            got.append(message)

    proto = AMIProtocol()
    proto.connection_made(None)
    proto.factory = Factory()
    proto.encoding = "utf8"
    proto.data_received(data[:cut])
    proto.data_received(data[cut:])
    assert got and got[0]["CallerIDName"] != NAME
    _, ours = feed_chunks([data[:cut], data[cut:]])
    assert ours[0].headers["CallerIDName"] == NAME


def test_repeated_keys_become_lists_and_bad_lines_are_counted() -> None:
    msg = parse_message(
        b"Event: VarSet\r\nChanVariable: A=1\r\nChanVariable: B=2\r\ngarbage line\r\nEmpty:\r\n"
    )
    assert msg.headers["ChanVariable"] == ["A=1", "B=2"]
    assert msg.headers["Empty"] == ""
    assert msg.malformed_lines == 1


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    msg = parse_message(b"Event: Newchannel\r\nCallerIDName: \xff\xfeabc\r\n")
    assert msg.undecodable
    assert msg.headers["CallerIDName"].endswith("abc")


def test_no_banner_still_frames() -> None:
    _, msgs = feed_chunks([event(1), event(2)[:10], event(2)[10:]])
    assert [m.event for m in msgs] == ["Newchannel", "Newchannel"]


def test_oversized_garbage_is_dropped() -> None:
    framer = AmiFramer()
    framer.feed(BANNER)
    framer.feed(b"x" * (5 * 1024 * 1024))
    assert framer.dropped_bytes > 0 and framer.buffered == 0
    assert [m.event for m in framer.feed(event(3))] == ["Newchannel"]

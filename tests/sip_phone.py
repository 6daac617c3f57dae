"""A desk phone in Python for what SIPp cannot play in one scenario: an attended transfer. It
answers a call on its static contact, places a consultation call to a colleague (digest auth, as
a phone's second line), then presses «transfer»: a REFER in the first call whose Refer-To names
the colleague with ``Replaces`` of the consultation (RFC 3891), as Yealink and Grandstream send.
No media: Asterisk bridges the patient and the colleague itself once it takes the REFER."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import quote

SDP = ("v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")


def digest_authorization(user: str, password: str, challenge: str, method: str, uri: str) -> str:
    """The Authorization header answering a ``WWW-Authenticate: Digest`` challenge (qop=auth),
    as a phone sends it; HA1 is what Asterisk's md5_cred holds."""
    p = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge))
    ha1 = hashlib.md5(f"{user}:{p['realm']}:{password}".encode()).hexdigest()  # noqa: S324 - SIP digest
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()  # noqa: S324
    cnonce, nc = secrets.token_hex(8), "00000001"
    response = hashlib.md5(f"{ha1}:{p['nonce']}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()  # noqa: S324
    return (f'Authorization: Digest username="{user}", realm="{p["realm"]}", nonce="{p["nonce"]}",'
            f' uri="{uri}", response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
            + (f', opaque="{p["opaque"]}"' if "opaque" in p else ""))


def header(msg: str, name: str) -> str:
    m = re.search(rf"^{name}:\s*(.*)$", msg, re.M | re.I)
    return m.group(1).strip() if m else ""


def tag_of(value: str) -> str:
    m = re.search(r";tag=([^;>\s]+)", value)
    return m.group(1) if m else ""


def uri_of(value: str) -> str:
    m = re.search(r"<([^>]+)>", value)
    return m.group(1) if m else value.split(";")[0]


@dataclass
class Dialog:
    call_id: str
    local: str  # our From/To value with our tag
    remote: str  # theirs with their tag
    target: str  # their Contact URI
    cseq: int = 1


@dataclass
class PythonPhone(asyncio.DatagramProtocol):
    extension: str
    password: str
    port: int
    server: tuple[str, int]
    log: list[str] = field(default_factory=list)
    incoming: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    responses: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    transport: asyncio.DatagramTransport | None = None
    byes: int = 0
    ended: set[str] = field(default_factory=set)  # Call-IDs Asterisk ended with a BYE

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", self.port))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = data.decode("utf-8", "replace")
        self.log.append(msg.split("\r\n", 1)[0])
        if msg.startswith("SIP/2.0 "):
            self.responses.put_nowait(msg)
        elif msg.startswith("INVITE ") and not tag_of(header(msg, "To")):
            self.incoming.put_nowait(msg)
        elif msg.startswith("ACK "):
            pass
        else:  # NOTIFY of the transfer's progress, BYE, OPTIONS: all answered 200
            if msg.startswith("BYE "):
                self.byes += 1
                self.ended.add(header(msg, "Call-ID"))
            self._send(self._reply(msg, "200 OK"))

    def _send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.sendto(text.encode(), self.server)

    def _via(self) -> str:
        return f"SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bK{secrets.token_hex(8)}"

    def _reply(self, msg: str, status: str, *, to_tag: str = "", body: str = "") -> str:
        vias = [line for line in msg.split("\r\n") if line.lower().startswith(("via:", "v:"))]
        to = header(msg, "To") + (f";tag={to_tag}" if to_tag and ";tag=" not in header(msg, "To") else "")
        lines = [f"SIP/2.0 {status}", *vias, f"From: {header(msg, 'From')}", f"To: {to}",
                 f"Call-ID: {header(msg, 'Call-ID')}", f"CSeq: {header(msg, 'CSeq')}",
                 f"Contact: <sip:{self.extension}@127.0.0.1:{self.port}>"]
        if body:
            lines.append("Content-Type: application/sdp")
        return "\r\n".join([*lines, f"Content-Length: {len(body)}", "", body])

    def _request(self, method: str, uri: str, d: Dialog, extra: tuple[str, ...] = (), body: str = "",
                 cseq: int | None = None, via: str = "") -> str:
        lines = [f"{method} {uri} SIP/2.0", f"Via: {via or self._via()}", f"From: {d.local}", f"To: {d.remote}",
                 f"Call-ID: {d.call_id}", f"CSeq: {cseq if cseq is not None else d.cseq} {method}",
                 f"Contact: <sip:{self.extension}@127.0.0.1:{self.port}>", "Max-Forwards: 70", *extra]
        if body:
            lines.append("Content-Type: application/sdp")
        return "\r\n".join([*lines, f"Content-Length: {len(body)}", "", body])

    async def _response(self, call_id: str, timeout: float = 15.0) -> str:
        while True:
            msg = await asyncio.wait_for(self.responses.get(), timeout)
            if header(msg, "Call-ID") == call_id:
                return msg

    async def answer(self, ring_s: float = 0.5, timeout: float = 20.0) -> Dialog:
        """Ring, answer the next call, wait for its ACK."""
        invite = await asyncio.wait_for(self.incoming.get(), timeout)
        tag = secrets.token_hex(4)
        self._send(self._reply(invite, "180 Ringing", to_tag=tag))
        await asyncio.sleep(ring_s)
        self._send(self._reply(invite, "200 OK", to_tag=tag, body=SDP.format(port=self.port + 100)))
        to = header(invite, "To")
        return Dialog(header(invite, "Call-ID"), to + f";tag={tag}", header(invite, "From"),
                      uri_of(header(invite, "Contact")))

    async def call(self, dialled: str) -> Dialog:
        """A second line: INVITE ``dialled``, the digest challenge answered, until the 200."""
        host, port = self.server
        uri = f"sip:{dialled}@{host}:{port}"
        d = Dialog(secrets.token_hex(8) + "@127.0.0.1", f"<sip:{self.extension}@{host}>;tag={secrets.token_hex(4)}",
                   f"<sip:{dialled}@{host}>", uri)
        body = SDP.format(port=self.port + 102)
        via = self._via()
        self._send(self._request("INVITE", uri, d, body=body, via=via))
        auth = ""
        while True:
            resp = await self._response(d.call_id)
            code = int(resp.split(" ", 2)[1])
            if code < 200:
                continue
            ack_to = header(resp, "To")
            if code in (401, 407) and not auth:
                # a failure's ACK belongs to the INVITE's transaction: its branch
                self._send(self._request("ACK", uri, Dialog(d.call_id, d.local, ack_to, uri), cseq=d.cseq, via=via))
                challenge = header(resp, "WWW-Authenticate") or header(resp, "Proxy-Authenticate")
                auth = self._digest(challenge, "INVITE", uri)
                d.cseq += 1
                via = self._via()
                self._send(self._request("INVITE", uri, d, extra=(auth,), body=body, via=via))
                continue
            if code != 200:
                raise AssertionError(f"consultation call refused: {resp.splitlines()[0]}")
            d.remote, d.target = ack_to, uri_of(header(resp, "Contact")) or uri
            self._send(self._request("ACK", d.target, d, cseq=d.cseq))
            d.cseq += 1
            return d

    def _digest(self, challenge: str, method: str, uri: str) -> str:
        return digest_authorization(self.extension, self.password, challenge, method, uri)

    async def hang_up(self, d: Dialog) -> None:
        """End a call Asterisk has not ended (as a phone does after its transfer succeeded), so
        no BYE of it is left to reach the next test's phone on this port."""
        if d.call_id in self.ended:
            return
        self._send(self._request("BYE", d.target, d))
        d.cseq += 1
        try:
            await self._response(d.call_id, timeout=5.0)
        except TimeoutError:
            pass

    async def attended_transfer(self, first: Dialog, consult: Dialog, colleague: str) -> str:
        """The transfer key after a consultation: REFER in the first call, Refer-To the colleague
        with Replaces of the consultation call (its Call-ID, Asterisk's tag as to-tag, ours as
        from-tag). Returns the REFER's answer (202 Accepted)."""
        replaces = quote(f"{consult.call_id};to-tag={tag_of(consult.remote)};from-tag={tag_of(consult.local)}", safe="")
        host, port = self.server
        refer_to = f"Refer-To: <sip:{colleague}@{host}:{port}?Replaces={replaces}>"
        self._send(self._request("REFER", first.target, first, extra=(refer_to, f"Referred-By: {first.local.split(';tag=')[0]}")))
        first.cseq += 1
        while True:
            resp = await self._response(first.call_id)
            if int(resp.split(" ", 2)[1]) >= 200:
                return resp.splitlines()[0]

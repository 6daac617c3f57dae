"""SIPp scenario steps the desk phone scenarios are assembled from (pbx.outbound.sipp): key
presses, the two ways a call ends, and the transfer key."""

from __future__ import annotations

from pathlib import Path

# RFC 2833 key presses recorded as pcap files, shipped by Debian's sip-tester
DTMF_PCAP = Path("/usr/share/sip-tester/dtmf_2833_{digit}.pcap")


def key_presses(keys: str, after_ms: int, *, bye_label: str = "") -> str:
    """SIPp steps that press ``keys`` (RFC 2833) ``after_ms`` after the answer, 1 s apart: an
    administrator who answers and presses a key. With ``bye_label`` the waits listen for the
    other side's BYE (it jumps there: a caller who hangs up before the key is answered, not
    left to retransmit); without, they are plain pauses (the phone hangs up itself later)."""
    out = []
    for i, digit in enumerate(k for k in keys if k in "0123456789"):
        pcap = str(DTMF_PCAP).format(digit=digit)
        wait = after_ms if i == 0 else 1000
        if bye_label:
            out.append(f'<recv request="BYE" timeout="{wait}" ontimeout="key{i}" next="{bye_label}"/>'
                       f'<label id="key{i}"/>')
        else:
            out.append(f'<pause milliseconds="{wait}"/>')
        out.append(f'<nop><action><exec play_pcap_audio="{pcap}"/></action></nop>')
    return "\n".join(out)


BYE_LABEL = "bye_received"

CALLER_HANGS_UP = """
  <recv request="BYE"/>
  <label id="bye_received"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="10" next="end"/>
"""

PHONE_HANGS_UP = """
  <pause milliseconds="@@HANGUP_MS@@"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:phone@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: [$peer]
      Call-ID: [call_id]
      CSeq: 20 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="10" next="end"/>
"""


# The phone's transfer key (a blind transfer): a REFER in the answered call's dialog, then the
# switch's NOTIFYs of how it goes are answered until its BYE ends the phone's part. A later call
# to the same phone (the patient coming back from a transfer nobody took) is simply talked on.
TRANSFER_KEY = """
  <nop>
    <action>
      <assignstr assign_to="callno" value="[call_number]"/>
      <todouble assign_to="n" variable="callno"/>
      <test assign_to="again" variable="n" compare="greater_than" value="1"/>
    </action>
  </nop>
  <nop test="again" next="talk_on"/>
  <pause milliseconds="@@REFER_AFTER_MS@@"/>
  <send retrans="500">
    <![CDATA[
      REFER [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:phone@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: [$peer]
      Call-ID: [call_id]
      CSeq: 1 REFER
      Contact: <sip:phone@[local_ip]:[local_port];transport=[transport]>
      Refer-To: <sip:@@REFER_TO@@@[local_ip]>
      Referred-By: <sip:phone@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="202"/>
  <label id="transfer_news"/>
  <recv request="NOTIFY" optional="true" next="notified"/>
  <recv request="BYE" next="bye_received"/>
  <label id="notified"/>
  <send next="transfer_news">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <label id="talk_on"/>
"""


def _reinvite(cseq: int, direction: str) -> str:
    return f"""
  <send retrans="500">
    <![CDATA[
      INVITE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:phone@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: [$peer]
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:phone@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=phone 53655765 {2353687637 + cseq} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a={direction}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:phone@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: [$peer]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>"""


def hold_key(after_ms: int, hold_ms: int) -> str:
    """The phone's hold key ``after_ms`` after the answer: a re-INVITE with ``sendonly`` (the
    patient hears the music on hold), and ``hold_ms`` later the key again: ``sendrecv``."""
    return (f'\n  <pause milliseconds="{after_ms}"/>' + _reinvite(10, "sendonly")
            + f'\n  <pause milliseconds="{hold_ms}"/>' + _reinvite(11, "sendrecv") + "\n")

"""``/provision/<token>/<file>``: a desk phone takes its settings (issue #29). No login (a phone
has none): the token in the URL is the phone's own secret, shown once on its set-up card, and
the file is served only to addresses of the clinic's networks (``asterisk.local_networks``, and
this machine). A request that came through a proxy the server was not told to trust is
refused: its real origin is unknown (the README's reverse proxy would make the world look local)."""

from __future__ import annotations

import logging

from aiohttp import web

from crm import login_limits
from crm import telephony as store
from crm.rules.provisioning import PhoneAccount, provisioning_file
from crm.secret_box import SecretBox
from pbx.services import SERVICES
from web.common import now_ts
from web.security import TRUSTED_PROXIES, client_of

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.0/8", "::1/128")


def clinic_networks(local_networks: str) -> tuple[str, ...]:
    """Loopback and the clinic's networks, as settings give them (a bad one is skipped: the
    transport's own check names it at start)."""
    out = list(LOOPBACK)
    for item in (x.strip() for x in local_networks.split(",")):
        try:
            out += login_limits.trusted_networks(item) if item else []
        except ValueError:
            log.warning("asterisk.local_networks: %r is no network; ignored for provisioning", item)
    return tuple(out)


def _origin_known(request: web.Request) -> bool:
    forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    return not forwarded or login_limits.in_networks(request.remote or "", request.app.get(TRUSTED_PROXIES, ()))


async def provision(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = services.settings
    address = client_of(request)
    if not _origin_known(request) or not login_limits.in_networks(address, clinic_networks(settings.asterisk.local_networks)):
        log.warning("provisioning refused to %s (not the clinic's network)", address or "?")
        raise web.HTTPForbidden(text="provisioning: the clinic's network only")
    file_name = request.match_info["file"]
    found = await store.phone_by_token(services.db, request.match_info["token"])
    password = SecretBox(settings.asterisk.provisioning_key).open(found[1]) if found is not None else None
    if found is None or password is None:
        raise web.HTTPNotFound(text="no such phone")
    phone = found[0]
    a = settings.asterisk
    port = (a.tls_port or a.sip_port + 1) if phone.secure else a.sip_port
    account = PhoneAccount(phone.extension, phone.label, password, a.phone_server or a.host, port,
                           "tls" if phone.secure else "udp", srtp=phone.secure)
    made = provisioning_file(file_name, account)
    if made is None:
        raise web.HTTPNotFound(text="no such file: Yealink <mac>.cfg, Grandstream cfg<mac>.xml")
    await store.note_provisioned(services.db, phone.extension, now_ts(request), address=address, file_name=file_name)
    content_type, text = made
    return web.Response(text=text, content_type=content_type, headers={"Cache-Control": "no-store"})

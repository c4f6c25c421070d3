"""``POST /webhooks/sipgate/{webhook_token}`` (CONTRACT §4). Four things: check the peer and the signature,
parse, store in one (group) transaction, answer XML. No CRM call, no socket send, no background task."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

from aiohttp import web

from hejcti import logs, tokens
from hejcti.config import Network, Settings
from hejcti.errors import BadRequestError, DatabaseUnavailableError
from hejcti.metrics import Metrics
from webhooks import sipgate
from webhooks.ingest import Ingest

log = logs.get("webhooks")
MAX_BODY = 64 * 1024
XML = "application/xml"
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def _in(addr: str | None, networks: Sequence[Network]) -> bool:
    if not addr:
        return False
    try:
        ip = ipaddress.ip_address(addr.strip().split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in n for n in networks)


def client_address(request: web.BaseRequest, trusted: Sequence[Network]) -> str | None:
    """The socket peer; when that peer is a trusted proxy, the right-most X-Forwarded-For entry that is not."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    addr = peer[0] if peer else None
    if not trusted or not _in(addr, trusted):
        return addr
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else addr


class WebhookHandler:
    def __init__(self, settings: Settings, ingest: Ingest, metrics: Metrics) -> None:
        self.ingest = ingest
        self.metrics = metrics
        self.allowed = settings.allowed_networks
        self.trusted = settings.trusted_networks
        self.signature = settings.sipgate_signature
        self.base = settings.base_url

    def _answer(self, event: str, status: int, text: str = "", content_type: str = "text/plain") -> web.Response:
        self.metrics.webhooks.labels(event or "unknown", str(status)).inc()
        return web.Response(status=status, text=text, content_type=content_type)

    async def __call__(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if self.allowed:
            addr = client_address(request, self.trusted)
            if not _in(addr, self.allowed):
                log.warning("webhook.forbidden", peer=addr)
                return self._answer("", 403, "peer not allowed\n")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._answer("", 413, f"body over {MAX_BODY} bytes\n")
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := await request.content.read(MAX_BODY):
                size += len(chunk)
                if size > MAX_BODY:
                    return self._answer("", 413, f"body over {MAX_BODY} bytes\n")
                chunks.append(chunk)
        except (ConnectionError, ValueError) as e:
            return self._answer("", 400, f"cannot read body: {type(e).__name__}\n")
        body = b"".join(chunks)

        if self.signature != "off" and not sipgate.signature_valid(body, request.headers.get("X-Sipgate-Signature")):
            self.metrics.signature_failures.inc()
            if self.signature == "enforce":
                log.warning("webhook.signature.rejected", bytes=len(body))
                return self._answer("", 403, "signature does not verify\n")
            log.warning("webhook.signature.invalid", bytes=len(body), mode="log")

        try:
            push = sipgate.parse(body)
        except BadRequestError as e:
            log.info("webhook.rejected", reason=str(e))
            return self._answer("", 400, f"{e}\n")

        try:
            status, event_id, account = await self.ingest.submit(tokens.digest(token), push)
        except DatabaseUnavailableError:
            return self._answer(push.event, 503, "database unavailable, try again\n")
        if status == "unknown":
            return self._answer(push.event, 404)
        log.info("webhook.accepted" if status == "stored" else "webhook.repeated", kind=push.event,
                 call_id=push.call_id, account=account, seq=event_id, number=push.data.get("number"))
        if push.event == "newCall":
            url = quoteattr(f"{self.base}/webhooks/sipgate/{token}")
            return self._answer(push.event, 200,
                                f'<?xml version="1.0" encoding="UTF-8"?><Response onAnswer={url} onHangup={url}/>',
                                XML)
        return self._answer(push.event, 200, EMPTY, XML)

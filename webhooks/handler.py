"""``POST /webhooks/sipgate/{webhook_token}`` (CONTRACT §4). Four things: check the peer and the signature,
parse, store in one (group) transaction, answer XML. No CRM call, no socket send, no background task."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from aiohttp import web

from hejcti import logs, tokens
from hejcti.config import Settings
from hejcti.connections import client_address, peer_in
from hejcti.errors import BadRequestError, DatabaseUnavailableError
from hejcti.metrics import Metrics
from webhooks import sipgate
from webhooks.ingest import Ingest

log = logs.get("webhooks")
MAX_BODY = 64 * 1024
XML = "application/xml"
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


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
            if not peer_in(addr, self.allowed):
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
        except BadRequestError as e:  # a field PostgreSQL refuses: a retry would be refused again
            log.info("webhook.rejected", reason=str(e), kind=push.event)
            return self._answer(push.event, 400, f"{e}\n")
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

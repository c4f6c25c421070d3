"""The portal's headers and error pages come from a guard around each portal handler, not from a middleware: a
sub-application's middleware makes aiohttp wrap every request of the whole app (webhooks, /ws) in middleware
machinery. Every portal answer, routed or not, still gets the headers and a page in the reader's language."""

from hejcti.portal.common import PREFIX
from tests.portal_kit import CSP, browser


async def test_the_root_app_and_the_portal_run_no_middleware(harness):
    app = harness.app
    assert not app._run_middlewares and not app.middlewares  # webhooks and /ws are handled bare
    assert all(not sub.middlewares for sub in app._subapps)


async def test_every_portal_answer_keeps_its_headers_and_error_page(harness):
    async with browser() as http:
        for method, path, status in (("GET", PREFIX + "/signin", 200), ("GET", PREFIX + "/nowhere", 404),
                                     ("GET", PREFIX + "/signout", 405), ("GET", PREFIX + "/refused/nonsense", 404),
                                     ("POST", PREFIX + "/users/usr_x/map", 303)):
            async with http.request(method, harness.base + path, allow_redirects=False) as r:
                text = await r.text()
                assert r.status == status and r.headers["Content-Security-Policy"] == CSP, (path, r.status)
                assert r.headers["X-Frame-Options"] == "DENY", path
                if status >= 400:
                    assert 'href="/portal/static/portal.css"' in text, (path, text[:300])

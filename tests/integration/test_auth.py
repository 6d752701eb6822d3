"""Sign-in, sessions, CSRF and API tokens, over real HTTP against uvicorn, on SQLite and PostgreSQL.

The first test walks every route the app has: anything not on the short public list must refuse a visitor
who is not signed in, and refuse a signed-in browser's state-changing request without its CSRF token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Mount

from invites import db
from invites.adapters.embedded import broker_url, client_for
from invites.adapters.ratelimit import SIGNIN, Limit, RateLimiter, SignInLimits
from invites.services import accounts
from invites.web.app import create_app
from tests.conftest import NOW, SignedInOrganiser, keep_loopback_cookies, run_cli, serve, sign_in

# What a visitor may reach without signing in: recipients' pages (they carry their own token), the public
# registration form, sign-in itself, health checks for the load balancer, and the API's documentation.
PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/login",
    "/logout",
    "/language",
    "/r/{token}",
    "/r/{token}/invite.ics",
    "/u/{token}",
    "/e/{slug}/register",
    "/docs",
    "/openapi.json",
}
PUBLIC_MOUNTS = {"/static"}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def concrete(path: str) -> str:
    """A real URL for a route's path template: every parameter filled in."""
    return re.sub(r"\{[^}]+\}", "x1", path)


def walk(routes: Any) -> Any:
    """Every route, with included routers opened up (FastAPI includes them lazily, as one route each)."""
    for route in routes:
        if hasattr(route, "effective_candidates"):
            yield from walk(route.effective_candidates())
        else:
            yield route


def organiser_routes() -> list[tuple[str, str]]:
    routes: list[tuple[str, str]] = []
    for route in walk(create_app().routes):
        if isinstance(route, Mount):
            assert route.path in PUBLIC_MOUNTS, f"unexpected mount {route.path}"
            continue
        path = getattr(route, "path", "")
        methods = sorted(getattr(route, "methods", None) or {"GET"})
        if path in PUBLIC:
            continue
        routes.extend((method, path) for method in methods if method != "HEAD")
    return routes


def csrf_of(client: httpx.Client, path: str = "/") -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found, f"no CSRF token on {path}"
    return found[1]


def test_every_organiser_route_requires_a_signed_in_organiser(web: str, organiser: SignedInOrganiser) -> None:
    routes = organiser_routes()
    paths = {path for _, path in routes}
    # The walk sees the organiser routes that exist today, so a route added without the check fails here.
    assert {"/", "/outbox", "/api/v1/events/{slug}/status", "/preview/{slug}"} <= paths
    assert any(path.startswith("/api/v1/") for path in paths)
    with httpx.Client(base_url=web) as visitor:
        for method, path in routes:
            response = visitor.request(method, concrete(path))
            if path.startswith("/api/"):
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.headers["www-authenticate"] == "Bearer"
            else:
                assert response.status_code == 303, (method, path, response.status_code)
                assert response.headers["location"].startswith("/login?next="), (method, path)
        bogus = {"Authorization": "Bearer inv_not-a-real-token"}
        for method, path in routes:
            response = visitor.request(method, concrete(path), headers=bogus)
            assert response.status_code in (401, 303), (method, path, response.status_code)

    with httpx.Client(base_url=web) as browser:
        sign_in(browser, organiser)
        for method, path in routes:
            if method in UNSAFE:
                response = browser.request(method, concrete(path))
                assert response.status_code == 403, (method, path, response.status_code)


def test_signing_in_and_out(web: str, organiser: SignedInOrganiser) -> None:
    with keep_loopback_cookies(httpx.Client(base_url=web)) as browser:
        first = browser.get("/outbox", params={"a": "1"})
        assert first.status_code == 303 and first.headers["location"] == "/login?next=%2Foutbox%3Fa%3D1"
        token = csrf_of(browser, "/login")
        wrong = browser.post(
            "/login", data={"email": organiser.email, "password": "not it at all", "csrf_token": token}
        )
        assert wrong.status_code == 400 and "horen niet bij elkaar" in wrong.text
        assert browser.get("/").status_code == 303
        no_csrf = browser.post("/login", data={"email": organiser.email, "password": organiser.password})
        assert no_csrf.status_code == 403

        signed = browser.post(
            "/login",
            data={
                "email": organiser.email.upper(),
                "password": organiser.password,
                "csrf_token": token,
                "next": "/outbox",
            },
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/outbox"
        cookie = signed.headers["set-cookie"].lower()
        assert "invites_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert "secure" in cookie, "BASE_URL is https here"
        home = browser.get("/")
        assert home.status_code == 200 and organiser.email in home.text
        fresh = csrf_of(browser)
        assert fresh != token, "signing in starts a new session with a new CSRF token"

        assert browser.post("/logout").status_code == 403, "signing out needs the CSRF token too"
        [stolen] = {cookie.value for cookie in browser.cookies.jar if cookie.name == "invites_session"}
        out = browser.post("/logout", data={"csrf_token": fresh})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert browser.get("/").status_code == 303
    # The cookie as it was before signing out (copied by someone, say) no longer opens anything.
    with httpx.Client(base_url=web, cookies={"invites_session": stolen}) as thief:
        assert thief.get("/").status_code == 303


def test_sign_in_never_redirects_to_another_site(web: str, organiser: SignedInOrganiser) -> None:
    with keep_loopback_cookies(httpx.Client(base_url=web)) as browser:
        for target in ("//evil.example.com/", "https://evil.example.com/", "/\\evil.example.com"):
            browser.cookies.clear()
            token = csrf_of(browser, "/login")
            response = browser.post(
                "/login",
                data={
                    "email": organiser.email,
                    "password": organiser.password,
                    "csrf_token": token,
                    "next": target,
                },
            )
            assert response.status_code == 303 and response.headers["location"] == "/", target


def from_address(web: str, local: str) -> httpx.Client:
    """A browser whose connections come from `local` (any 127.x.y.z is this machine on Linux loopback), so
    the app sees a different client address for each."""
    return keep_loopback_cookies(
        httpx.Client(base_url=web, transport=httpx.HTTPTransport(local_address=local), timeout=30)
    )


class LoginForm:
    """The sign-in form of one browser, fetched once (with its CSRF token) and posted as often as asked."""

    def __init__(self, browser: httpx.Client) -> None:
        self.browser = browser
        self.csrf = csrf_of(browser, "/login")

    def post(self, email: str, password: str) -> int:
        data = {"email": email, "password": password, "csrf_token": self.csrf}
        return self.browser.post("/login", data=data).status_code


# The sign-in limits scaled down (each argon2 check costs a second on a busy machine), in the same
# proportions as SIGNIN: the account's ceiling is ten clients' worth of the pair's limit.
SMALL = SignInLimits(
    pair=Limit(SIGNIN.pair.name, 3, 900),
    client=Limit(SIGNIN.client.name, 6, 300),
    account=Limit(SIGNIN.account.name, 30, 900),
)


@pytest.fixture
def limits(runtime: Any) -> Iterator[SignInLimits]:
    """The app's limiter with SMALL sign-in limits, and none of this session's earlier counts."""
    redis = client_for(broker_url(runtime.settings))
    runtime.limiter = RateLimiter(redis, namespace=runtime.settings.queue, signin=SMALL)
    pattern = f"invites:rate:{runtime.settings.queue}:signin-*"
    for key in redis.scan_iter(pattern):
        redis.delete(key)
    yield SMALL
    for key in redis.scan_iter(pattern):
        redis.delete(key)


def test_a_guesser_is_stopped_at_their_own_client_not_the_organisers(
    web: str, organiser: SignedInOrganiser, limits: SignInLimits
) -> None:
    with from_address(web, "127.0.0.2") as attacker, from_address(web, "127.0.0.3") as own_desk:
        guesses = LoginForm(attacker)
        for _ in range(limits.pair.requests):
            assert guesses.post(organiser.email, "a wrong guess") == 400
        # Refused before the password is even checked: the right one does not help the guesser's client.
        blocked = attacker.post(
            "/login",
            data={"email": organiser.email, "password": organiser.password, "csrf_token": guesses.csrf},
        )
        assert blocked.status_code == 429 and "Te veel pogingen" in blocked.text
        assert attacker.get("/").status_code == 303
        # The same account from another client: the organiser still gets in.
        assert LoginForm(own_desk).post(organiser.email, organiser.password) == 303
        assert own_desk.get("/").status_code == 200


def test_guessing_from_rotating_clients_is_bounded_per_account(
    web: str, organiser: SignedInOrganiser, limits: SignInLimits
) -> None:
    with from_address(web, "127.0.0.4") as own_desk:
        assert LoginForm(own_desk).post(organiser.email, organiser.password) == 303
    rotation = [f"127.0.1.{n}" for n in range(1, limits.account.requests // limits.pair.requests + 1)]

    def guess_from(local: str) -> list[int]:
        with from_address(web, local) as attacker:
            form = LoginForm(attacker)
            return [form.post(organiser.email, f"guess {n}") for n in range(limits.pair.requests)]

    codes = [code for local in rotation for code in guess_from(local)]
    assert codes == [400] * limits.account.requests
    # The account's ceiling is reached: a client it has never signed in from is refused, right password
    # or not, so the rotation gets no more guesses ...
    with from_address(web, "127.0.2.1") as next_attacker:
        form = LoginForm(next_attacker)
        assert form.post(organiser.email, organiser.password) == 429
        assert form.post(organiser.email, "one more guess") == 429
    # ... while the organiser at the desk they signed in from before still gets in.
    with from_address(web, "127.0.0.4") as own_desk:
        assert LoginForm(own_desk).post(organiser.email, organiser.password) == 303
        assert own_desk.get("/").status_code == 200


def test_one_client_guessing_at_many_accounts_is_stopped(web: str, limits: SignInLimits) -> None:
    with from_address(web, "127.0.0.5") as sprayer:
        form = LoginForm(sprayer)
        codes = [form.post(f"user{n}@example.org", "Welkom01!") for n in range(limits.client.requests + 1)]
    assert codes == [400] * limits.client.requests + [429]


def test_api_tokens_are_shown_once_stored_hashed_and_revocable(
    web: str, runtime: Any, organiser: SignedInOrganiser
) -> None:
    with runtime.sessions() as session:
        stored = [token.digest for token in accounts.get_user(session, organiser.email).tokens]
    assert organiser.token not in stored and len(stored) == 1 and len(stored[0]) == 64
    with httpx.Client(base_url=web) as client:
        assert client.get("/api/v1/events/x1/status", headers=organiser.headers).status_code == 404
        with db.transaction(runtime.sessions) as session:
            user = accounts.get_user(session, organiser.email)
            accounts.revoke_token(session, user, user.tokens[0].id, NOW)
        assert client.get("/api/v1/events/x1/status", headers=organiser.headers).status_code == 401


def test_a_password_change_or_removal_ends_every_session_and_token(
    web: str, runtime: Any, organiser: SignedInOrganiser
) -> None:
    with httpx.Client(base_url=web) as browser, httpx.Client(base_url=web) as script:
        sign_in(browser, organiser)
        assert browser.get("/").status_code == 200
        assert script.get("/api/v1/events/x1/status", headers=organiser.headers).status_code == 404
        with db.transaction(runtime.sessions) as session:
            accounts.set_password(
                session, accounts.get_user(session, organiser.email), "a brand new password", NOW
            )
        assert browser.get("/").status_code == 303
        # Whoever learned the old password may have made a token with it: that token stops too.
        stale = script.get("/api/v1/events/x1/status", headers=organiser.headers)
        assert stale.status_code == 401 and stale.headers["www-authenticate"] == "Bearer"
    with runtime.sessions() as session:
        tokens = accounts.get_user(session, organiser.email).tokens
        assert [token.revoked_at is not None for token in tokens] == [True]
    with db.transaction(runtime.sessions) as session:
        fresh = accounts.issue_token(session, accounts.get_user(session, organiser.email), "new", NOW)
    renewed = SignedInOrganiser(organiser.email, "a brand new password", fresh.secret)
    with httpx.Client(base_url=web) as browser:
        sign_in(browser, renewed)
        assert browser.get("/").status_code == 200
        assert browser.get("/api/v1/events/x1/status", headers=renewed.headers).status_code == 404
        with db.transaction(runtime.sessions) as session:
            accounts.deactivate(session, accounts.get_user(session, organiser.email), NOW)
        assert browser.get("/").status_code == 303
        assert browser.get("/api/v1/events/x1/status", headers=renewed.headers).status_code == 401


def test_security_headers(web: str, organiser: SignedInOrganiser, runtime: Any) -> None:
    with httpx.Client(base_url=web) as client:
        for path in ("/login", "/r/not-a-token", "/healthz"):
            headers = client.get(path).headers
            csp = headers["content-security-policy"]
            script_src = next(part for part in csp.split(";") if part.strip().startswith("script-src"))
            assert "'unsafe-inline'" not in script_src and "'unsafe-inline'" not in csp, path
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "no-referrer"
            assert headers["strict-transport-security"].startswith("max-age="), "BASE_URL is https here"
        page = client.get("/login").text
        assert "<style" not in page and " style=" not in page and "<script>" not in page
        # Recipients get no cookie: only organisers (and the sign-in form) have a session.
        assert "set-cookie" not in client.get("/r/not-a-token").headers

    runtime.settings.base_url = "http://127.0.0.1:8000"
    with serve(create_app(runtime)) as plain, httpx.Client(base_url=plain) as client:
        login = client.get("/login")
        assert "strict-transport-security" not in login.headers, "no HSTS when BASE_URL is plain http"
        assert "secure" not in login.headers["set-cookie"].lower()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_user_commands(settings: Any, web: str) -> None:
    added = run_cli(
        settings,
        "user",
        "add",
        "beheer@example.org",
        "--name",
        "Beheer",
        "--password-stdin",
        input_text="een goed wachtwoord\n",
    )
    assert "beheer@example.org added" in added.stdout
    again = run_cli(
        settings,
        "user",
        "add",
        "beheer@example.org",
        "--password-stdin",
        input_text="een goed wachtwoord\n",
        check=False,
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    short = run_cli(
        settings, "user", "add", "kort@example.org", "--password-stdin", input_text="kort\n", check=False
    )
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    made_up = run_cli(settings, "user", "add", "zelf@example.org")
    password = re.search(r"password \(shown once\): (\S+)", made_up.stdout)
    assert password, made_up.stdout

    token = run_cli(settings, "user", "token", "beheer@example.org").stdout.strip()
    assert token.startswith("inv_")
    with httpx.Client(base_url=web) as client:
        assert (
            client.get("/api/v1/events/x1/status", headers={"Authorization": f"Bearer {token}"}).status_code
            == 404
        )
        sign_in(client, SignedInOrganiser("zelf@example.org", password[1], ""))
        assert client.get("/").status_code == 200
    listing = run_cli(settings, "user", "list").stdout
    assert "beheer@example.org" in listing and "zelf@example.org" in listing

    # A new password stops the tokens made before it, and says so; a token made after it works.
    renewed = run_cli(
        settings,
        "user",
        "password",
        "beheer@example.org",
        "--password-stdin",
        input_text="een nieuw wachtwoord\n",
    )
    assert "1 API token(s) revoked" in renewed.stdout, renewed.stdout
    second = run_cli(settings, "user", "token", "beheer@example.org").stdout.strip()
    with httpx.Client(base_url=web) as client:
        old_token = client.get("/api/v1/events/x1/status", headers={"Authorization": f"Bearer {token}"})
        assert old_token.status_code == 401
        new_token = client.get("/api/v1/events/x1/status", headers={"Authorization": f"Bearer {second}"})
        assert new_token.status_code == 404
    token = second
    run_cli(settings, "user", "remove", "beheer@example.org")
    with httpx.Client(base_url=web) as client:
        assert (
            client.get("/api/v1/events/x1/status", headers={"Authorization": f"Bearer {token}"}).status_code
            == 401
        )


def test_browsers_get_error_pages_and_scripts_get_json(web: str, organiser: SignedInOrganiser) -> None:
    page = {"Accept": "text/html,application/xhtml+xml"}
    with keep_loopback_cookies(httpx.Client(base_url=web)) as browser:
        missing = browser.get("/no/such/page", headers=page)
        assert missing.status_code == 404 and "Deze pagina bestaat niet" in missing.text
        assert browser.get("/no/such/page").json() == {"detail": "Not Found"}
        sign_in(browser, organiser)
        segment = browser.get("/events/x1/audience", params={"role": "keizer"}, headers=page)
        assert segment.status_code == 400 and segment.headers["content-type"].startswith("text/html")
        assert "keizer" in segment.text and "Dat is niet gelukt" in segment.text
        bad = browser.get("/api/v1/events/x1/audience", params={"role": "keizer"}, headers=page)
        assert bad.status_code in (400, 404) and bad.headers["content-type"].startswith("application/json")

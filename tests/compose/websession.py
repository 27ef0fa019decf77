"""A signed-in HTTP client for the deployment's published port, from the host: the login
form (with its CSRF token), then plain GETs with the session cookie."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

CSRF_FIELD = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


class WebSession:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[int, bytes, str]:
        """Status, body and the final URL (after redirects)."""
        return self._open(urllib.request.Request(self.base_url + path))

    def login(self, username: str, password: str) -> None:
        status, body, _url = self.get("/accounts/login/")
        found = CSRF_FIELD.search(body)
        if status != 200 or found is None:
            raise AssertionError(f"the login page answered {status} without its form")
        form = urllib.parse.urlencode(
            {
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": found.group(1).decode(),
            }
        ).encode()
        status, _body, url = self._open(
            urllib.request.Request(self.base_url + "/accounts/login/", data=form)
        )
        if status != 200 or url.rstrip("/").endswith("/accounts/login"):
            raise AssertionError(f"signing in as {username} failed ({status} at {url})")

    def _open(self, request: urllib.request.Request) -> tuple[int, bytes, str]:
        try:
            with self._opener.open(request, timeout=60) as response:
                return response.status, response.read(), response.url
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.url

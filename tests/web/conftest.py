from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.web import factories


@pytest.fixture(autouse=True)
def _empty_cache(request):
    """The compare cache is keyed by database state; tests reuse primary keys. It is a
    database table (settings.CACHES): a test that uses no database has nothing to clear,
    and a transactional test's flush does not empty it (it is not a model's table)."""
    from django.core.cache import cache

    if "_django_db_helper" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("_django_db_helper")  # database access before the clear
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def owner(db):
    return get_user_model().objects.create_user("olivia", password="pw-olivia-123")


@pytest.fixture
def member(db):
    return get_user_model().objects.create_user("maxime", password="pw-maxime-123")


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user(
        "sam", password="pw-sam-123", is_staff=True, is_superuser=True
    )


def _client(user) -> Client:
    c = Client()
    if user is not None:
        c.force_login(user)
    return c


@pytest.fixture
def as_owner(owner):
    return _client(owner)


@pytest.fixture
def as_member(member):
    return _client(member)


@pytest.fixture
def as_staff(staff):
    return _client(staff)


@pytest.fixture
def anonymous(db):
    return Client()


@pytest.fixture
def csrf_client(owner):
    """A client that enforces CSRF, as a browser's would."""
    c = Client(enforce_csrf_checks=True)
    c.force_login(owner)
    return c


@pytest.fixture
def wl(db):
    return factories.workload()


@pytest.fixture
def exp(owner, wl):
    e = factories.experiment(owner, wl, name="lr sweep", status="succeeded", runs_done=2)
    first = factories.run(e, 0)
    factories.run(e, 1)
    factories.background_run(e, 0, first.started_at, 30, log_tail="background says hello\n")
    return e

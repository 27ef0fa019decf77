"""Sign-in hardening (issue 9, item 11): repeated wrong passwords lock the account out
for a while (django-axes); weak passwords are refused by Django's validators."""

from __future__ import annotations

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _sign_in(client: Client, password: str):
    return client.post(reverse("login"), {"username": "olivia", "password": password})


def test_wrong_passwords_lock_the_login_out_even_for_the_right_one(owner, settings):
    client = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _sign_in(client, "not-the-password").status_code == 200
    assert _sign_in(client, "not-the-password").status_code == 429
    locked = _sign_in(client, "pw-olivia-123")
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    assert "_auth_user_id" not in client.session


def test_another_address_is_not_locked_out_by_someone_elses_guesses(owner, settings):
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(attacker, "guess")
    olivia = Client(REMOTE_ADDR="198.51.100.2")
    assert _sign_in(olivia, "pw-olivia-123").status_code == 302


def test_a_good_sign_in_resets_the_count(owner, settings):
    client = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in(client, "typo")
    assert _sign_in(client, "pw-olivia-123").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in(client, "typo")
    assert _sign_in(client, "pw-olivia-123").status_code == 302


@pytest.mark.parametrize("weak", ["12345678", "password123", "olivia2026", "short"])
def test_weak_passwords_are_refused(owner, weak):
    with pytest.raises(ValidationError):
        validate_password(weak, user=owner)


def test_the_demo_login_and_the_test_passwords_pass(owner):
    import secrets

    validate_password(secrets.token_urlsafe(9))  # what `make run` prints
    validate_password("pw-olivia-123", user=owner)

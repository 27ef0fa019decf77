"""A password must not contain its owner's names.

Django's ``UserAttributeSimilarityValidator`` compares the whole password with the user
name: ``alice12345`` is only 67 % like ``alice`` (it refuses from 70 %), so it passes,
and a guesser tries the user name plus digits first. This one refuses a password that
contains the user name, the first or last name, or the name part of the e-mail address
(each at least three characters, any case).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError

_ATTRIBUTES = {
    "username": "user name",
    "first_name": "first name",
    "last_name": "last name",
    "email": "e-mail address",
}


class UserNameInPasswordValidator:
    min_length = 3

    def validate(self, password: str, user: Any = None) -> None:
        if user is None:
            return
        lowered = password.casefold()
        for attribute, label in _ATTRIBUTES.items():
            value = getattr(user, attribute, None)
            if not isinstance(value, str) or not value:
                continue
            if attribute == "email":
                value = value.partition("@")[0]
            for part in {value, *re.split(r"\W+", value)}:
                if len(part) >= self.min_length and part.casefold() in lowered:
                    raise ValidationError(
                        "The password contains your %(label)s.",
                        code="password_contains_user_attribute",
                        params={"label": label},
                    )

    def get_help_text(self) -> str:
        return (
            "Your password can't contain your user name, your first or last name or the "
            "name part of your e-mail address."
        )

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpRequest, HttpResponseBase
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic.base import RedirectView

from experiments.api import api


def mail_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """404 until mail is configured (settings: DJANGO_EMAIL_HOST): a reset with nothing
    to send only tells which addresses have an account."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not settings.WATTLAB_MAIL_CONFIGURED:
            raise Http404("Password reset by e-mail is not set up here: ask an administrator.")
        return view(request, *args, **kwargs)

    return wrapped


# django.contrib.auth.urls, with the password reset behind mail_required.
_RESET: list[tuple[str, Any, str]] = [
    ("password_reset/", auth_views.PasswordResetView, "password_reset"),
    ("password_reset/done/", auth_views.PasswordResetDoneView, "password_reset_done"),
    ("reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView, "password_reset_confirm"),
    ("reset/done/", auth_views.PasswordResetCompleteView, "password_reset_complete"),
]
auth_urls = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    *(path(route, mail_required(view.as_view()), name=name) for route, view, name in _RESET),
]

urlpatterns = [
    # Pages name their icon; a client that asks for /favicon.ico anyway (the admin's
    # JSON views, a bookmark, an API tool) gets it rather than a 404 in every log.
    path("favicon.ico", RedirectView.as_view(url=lazy(static, str)("favicon.svg"))),
    path("admin/", admin.site.urls),
    path("accounts/", include(auth_urls)),
    path("api/", api.urls),
    path("", include("experiments.urls")),
]

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic.base import RedirectView

from experiments.api import api

urlpatterns = [
    # Pages name their icon; a client that asks for /favicon.ico anyway (the admin's
    # JSON views, a bookmark, an API tool) gets it rather than a 404 in every log.
    path("favicon.ico", RedirectView.as_view(url=lazy(static, str)("favicon.svg"))),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", api.urls),
    path("", include("experiments.urls")),
]

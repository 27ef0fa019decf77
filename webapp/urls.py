from django.contrib import admin
from django.urls import include, path

from experiments.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", api.urls),
    path("", include("experiments.urls")),
]

"""The JSON API: token authentication and the same permissions as the pages."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from experiments.api import token_create
from experiments.models import Experiment
from tests.web import factories

pytestmark = pytest.mark.django_db


def _api(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, name='test')}")


def test_the_api_refuses_calls_without_a_valid_token(exp):
    assert Client().get("/api/experiments").status_code == 401
    bad = Client(HTTP_AUTHORIZATION="Bearer wl_not-a-real-token")
    assert bad.get(f"/api/experiments/{exp.code}").status_code == 401
    assert bad.post("/api/experiments", {}, content_type="application/json").status_code == 401


def test_a_session_cookie_is_not_an_api_credential(as_owner, exp):
    # Token only: a browser session would otherwise allow cross-site POSTs.
    assert as_owner.post(f"/api/experiments/{exp.code}/cancel").status_code == 401


def test_a_member_lists_and_reads_every_experiment(member, exp):
    api = _api(member)
    listing = api.get("/api/experiments").json()
    assert listing["count"] == 1 and listing["results"][0]["code"] == str(exp.code)
    status = api.get(f"/api/experiments/{exp.code}").json()
    assert status["status"] == "succeeded" and status["owner"] == "olivia"
    results = api.get(f"/api/experiments/{exp.code}/results").json()
    assert len(results["runs"]) == 2 and results["runs"][0]["energy"]["gpu_method"] == "counter"
    csv = api.get(f"/api/experiments/{exp.code}/export?format=csv")
    assert csv["Content-Type"].startswith("text/csv") and csv.content.count(b"\n") == 3


def test_list_filters_are_checked(member, exp):
    api = _api(member)
    assert api.get("/api/experiments?status=exploded").status_code == 422
    assert api.get("/api/experiments?owner=nobody").json()["count"] == 0


def test_unknown_codes_are_404_not_500(member):
    api = _api(member)
    assert api.get(f"/api/experiments/{uuid.uuid4()}").status_code == 404
    assert api.get("/api/experiments/not-a-uuid").status_code == 404


def test_submit_through_the_api_creates_an_experiment_owned_by_the_token_user(member, wl):
    api = _api(member)
    response = api.post(
        "/api/experiments",
        {
            "spec": {
                "name": "api run",
                "foreground": {"workload": "mnist", "hyperparameters": {"epochs": 3}},
            }
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    e = Experiment.objects.get(code=response.json()["code"])
    assert e.owner == member and e.source == "api" and e.fg_hyperparameters == {"epochs": 3}


def test_submit_errors_name_the_key(member, wl):
    api = _api(member)
    bad_value = api.post(
        "/api/experiments",
        {
            "spec": {
                "name": "x",
                "foreground": {"workload": "mnist", "hyperparameters": {"epochs": 500}},
            }
        },
        content_type="application/json",
    )
    assert bad_value.status_code == 400
    assert "foreground.hyperparameters.epochs" in bad_value.json()["errors"]
    bad_yaml = api.post(
        "/api/experiments", {"text": "name: [oops"}, content_type="application/json"
    )
    assert bad_yaml.status_code == 400 and "(file)" in bad_yaml.json()["errors"]
    unknown = api.post(
        "/api/experiments",
        {"spec": {"name": "x", "foreground": {"workload": "mnist"}, "colour": "red"}},
        content_type="application/json",
    )
    assert unknown.status_code == 400 and "colour" in unknown.json()["errors"]
    assert not Experiment.objects.exists()


def test_only_the_owner_or_staff_cancel_through_the_api(owner, member, staff, wl):
    queued = factories.experiment(owner, wl, status="queued")
    assert _api(member).post(f"/api/experiments/{queued.code}/cancel").status_code == 403
    queued.refresh_from_db()
    assert queued.status == "queued"
    response = _api(owner).post(f"/api/experiments/{queued.code}/cancel")
    assert response.status_code == 200 and response.json() == {
        "cancelled": True,
        "status": "cancelled",
    }
    running = factories.experiment(owner, wl, status="running")
    assert _api(staff).post(f"/api/experiments/{running.code}/cancel").json()["cancelled"] is True


def test_the_openapi_schema_is_served_to_members_only(as_member):
    assert Client().get("/api/openapi.json").status_code == 302
    schema = as_member.get("/api/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/experiments" in paths and "/api/experiments/{code}/cancel" in paths
    assert schema.json()["components"]["securitySchemes"]


def test_no_api_page_loads_anything_from_a_cdn(as_member):
    from experiments.api import LOCAL_DOCS

    docs = as_member.get("/api/docs")
    if LOCAL_DOCS:
        assert docs.status_code == 200 and b"cdn" not in docs.content.lower()
    else:
        assert docs.status_code == 404
    tokens = as_member.get("/account/tokens/").content.decode()
    assert "/api/" in tokens and "cdn" not in tokens.lower()

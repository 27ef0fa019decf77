"""The API's OpenAPI schema as its clients read it: every answer an operation can give,
and request schemas that say what the server accepts. Generated clients trust the
schema, and Schemathesis (tests/web/test_api_schema.py) holds the server to it.

django-ninja documents what an operation declares (its success and the errors listed
in ``response=``); the answers every operation shares come from the machinery around
it and are added here for all operations alike, the ones added later included:

- 401: the operation needs a token and the request has no valid one;
- 404: a path with an experiment code names no experiment (or is not a code);
- 422: a parameter or the body does not match the schema (django-ninja's validation).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse

from experiments.expfile import TARGET_PATTERN, ExperimentFile

#: django-ninja's answer to a request that does not match the schema.
VALIDATION_ERROR = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                },
            },
        }
    },
}
#: Every other error: a sentence.
DETAIL = {
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"type": "string"}},
}

SHARED_ANSWERS: dict[str, tuple[str, dict[str, Any]]] = {
    "401": ("No valid token: send Authorization: Bearer <token> (see /account/tokens/)", DETAIL),
    "404": ("No experiment with this code (or the code is not one)", DETAIL),
    "422": (
        "A parameter or the body does not match this schema; detail says where",
        VALIDATION_ERROR,
    ),
}

#: Text with no control character (the experiment file refuses them: PostgreSQL cannot
#: even store NUL).
NO_CONTROL_CHARACTERS = r"^[^\u0000-\u001f\u007f-\u009f]*$"


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _strings_without_control_characters(node: Any) -> None:
    """Every free text in the experiment file's schema refuses control characters,
    as the server does."""
    if isinstance(node, dict):
        if node.get("type") == "string" and "enum" not in node and "pattern" not in node:
            node["pattern"] = NO_CONTROL_CHARACTERS
        for key, value in node.items():
            # A mapping's keys are text too (hyperparameter names).
            if key == "propertyNames" and isinstance(value, dict) and "pattern" not in value:
                value.setdefault("type", "string")
            _strings_without_control_characters(value)
    elif isinstance(node, list):
        for item in node:
            _strings_without_control_characters(item)


def experiment_file_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The experiment file's JSON schema (from the model the server validates with)
    and its definitions, ready to sit under components/schemas."""
    schema = copy.deepcopy(
        ExperimentFile.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    definitions = schema.pop("$defs", {})
    _strings_without_control_characters(schema)
    _strings_without_control_characters(definitions)
    target = schema["properties"]["target"]
    target["pattern"] = TARGET_PATTERN
    target["description"] = "any, HOST or HOST:GPU (for example gpu01:0), slurm or slurm:PARTITION"
    return schema, definitions


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the shared answers to every operation, and tighten the submit body."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    spec, definitions = experiment_file_schema()
    components.update(definitions)
    components["ExperimentFile"] = spec
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            # Statuses an operation declares come as numbers: as text, so that a shared
            # answer it declares itself is not added a second time (a JSON object with
            # "404" twice, which the docs page refuses to read).
            answers = {str(status): answer for status, answer in operation["responses"].items()}
            operation["responses"] = answers
            wanted = []
            if operation.get("security"):
                wanted.append("401")
            if "{code}" in path:
                wanted.append("404")
            if operation.get("parameters") or operation.get("requestBody"):
                wanted.append("422")
            for status in wanted:
                if status not in answers:
                    description, body = SHARED_ANSWERS[status]
                    answers[status] = {"description": description, "content": _json(body)}
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "code":
                    parameter["schema"] = {"type": "string", "format": "uuid", "title": "Code"}
            _tighten_submit(operation, method, components)
    return schema


def _tighten_submit(operation: dict[str, Any], method: str, components: dict[str, Any]) -> None:
    """The submit body: the experiment file as an object (``spec``) or as YAML / JSON
    text (``text``), exactly one of them, not null."""
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    ref = body.get("schema", {}).get("$ref", "")
    if method != "post" or not ref.endswith("/SubmitIn"):
        return
    submit = components["SubmitIn"]
    text = submit["properties"]["text"]
    text_schema = next((s for s in text.get("anyOf", []) if s.get("type") == "string"), text)
    submit["properties"] = {
        "spec": {"$ref": "#/components/schemas/ExperimentFile"},
        "text": {
            **{k: v for k, v in text_schema.items() if k != "title"},
            "description": "the experiment file as YAML or JSON text",
        },
    }
    submit["oneOf"] = [{"required": ["spec"]}, {"required": ["text"]}]
    submit["additionalProperties"] = False


def docs_access(
    authenticate: Callable[[HttpRequest, str], Any],
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A decorator for the schema and the docs page: a signed-in browser or a valid API
    token (``authenticate``: the API's own check) may read them, as the API's clients
    call it with their token. A request with a token that is not valid gets 401, a
    browser without one the login page."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if getattr(request.user, "is_authenticated", False):
                return view(request, *args, **kwargs)
            header = request.headers.get("Authorization", "")
            if not header:
                return redirect_to_login(request.get_full_path())
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and authenticate(request, token.strip()):
                return view(request, *args, **kwargs)
            return JsonResponse({"detail": "Unauthorized"}, status=401)

        return wrapped

    return decorate

"""Wattlab's settings for the test run: ``webapp.settings`` with a throwaway secret key
(the settings refuse to start without one).

Both are set in the environment, not only here: the child processes the tests start
(workers, ``manage.py``) read the same key, and importing the ``webapp`` package (its
Celery app reads the settings while it loads) must find ``webapp.settings``, not this
half-imported module.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "wattlab-tests-only-" + "k" * 40)

# Under pytest-xdist (make test runs the suite in several processes) each process gets
# a var folder of its own: its SQLite test database, broker folder, artifacts and
# scratch space. pytest-django already gives each a database of its own on PostgreSQL.
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _xdist_worker and not os.environ.get("WATTLAB_VAR_DIR", "").endswith(_xdist_worker):
    _var = os.environ.get("WATTLAB_VAR_DIR") or os.path.join(os.path.dirname(__file__), "..", "var")
    os.environ["WATTLAB_VAR_DIR"] = os.path.join(os.path.abspath(_var), "xdist", _xdist_worker)
os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.settings"

from django.conf import global_settings as _django_defaults  # noqa: E402

from webapp.settings import *  # noqa: E402,F403

# The test process hashes its users' passwords with a fast hasher: PBKDF2's million
# rounds cost 0.4 s of CPU each on these machines, and the suite creates hundreds of
# users (and the lockout tests try many passwords). Wattlab's own processes that the
# tests start (workers, manage.py, make run) keep the settings' real hashers.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    *_django_defaults.PASSWORD_HASHERS,
]

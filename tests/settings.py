"""Wattlab's settings for the test run: ``webapp.settings`` with a throwaway secret key
(the settings refuse to start without one).

Both are set in the environment, not only here: the child processes the tests start
(workers, ``manage.py``) read the same key, and importing the ``webapp`` package (its
Celery app reads the settings while it loads) must find ``webapp.settings``, not this
half-imported module.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "wattlab-tests-only-" + "k" * 40)
os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.settings"

from webapp.settings import *  # noqa: E402,F403

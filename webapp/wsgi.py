import os
from pathlib import Path

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
# Made here, when the web server starts, rather than by the settings on import:
# WhiteNoise warns about a missing STATIC_ROOT (collectstatic fills it in the image).
Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
application = get_wsgi_application()

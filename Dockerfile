# One image for the web app, the reaper and the workers (docker-compose.yml).
#
# Build options (compose passes them from WATTLAB_BASE_IMAGE and WATTLAB_CA_BUNDLE):
# - BASE_IMAGE: any image with Python 3.11 or 3.12 and its venv module. For GPU trainings
#   through PyTorch, one with CUDA and PyTorch: the virtual environment below sees the
#   base's own packages (the NumPy path needs neither).
# - CA_BUNDLE: behind a TLS-inspecting proxy, a CA bundle (the public roots plus the
#   proxy's CA) as a path inside the build context; pip trusts it while it installs the
#   dependencies. It stays in the build stages: the image never contains it.
# Written for the classic builder as well as BuildKit (Debian's docker.io and
# docker-compose 1.29 build without BuildKit): no RUN --mount.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# pyproject.toml's dependencies as a requirements file: the next stage copies only that
# (and the bundle), so its pip install is rebuilt when they change, not on any edit.
FROM ${BASE_IMAGE} AS requirements
ARG CA_BUNDLE=
COPY pyproject.toml ${CA_BUNDLE} /build/
RUN python3 -c "import tomllib; print(*tomllib.load(open('/build/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /build/requirements.txt \
    && rm /build/pyproject.toml

FROM ${BASE_IMAGE} AS deps
ARG CA_BUNDLE=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=requirements /build /build
RUN if [ -n "$CA_BUNDLE" ]; then export PIP_CERT="/build/$(basename "$CA_BUNDLE")"; fi \
    && python3 -m venv --system-site-packages /opt/wattlab \
    && /opt/wattlab/bin/pip install --quiet -r /build/requirements.txt

# The code, without the var folder (and the CA bundle, wherever it was placed).
FROM ${BASE_IMAGE} AS source
ARG CA_BUNDLE=
COPY . /app
RUN rm -rf /app/var && if [ -n "$CA_BUNDLE" ]; then rm -f "/app/$CA_BUNDLE"; fi

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 WEB_CONCURRENCY=4 \
    VIRTUAL_ENV=/opt/wattlab PATH=/opt/wattlab/bin:$PATH
COPY --from=deps /opt/wattlab /opt/wattlab
COPY --from=source /app /app
WORKDIR /app
# /data/*: the mount points of the compose volumes (artifacts, scratch); a new volume
# takes the ownership of its mount point, so user wattlab can write there.
# collectstatic needs a key to load the settings, not a real one: none is kept.
RUN useradd --create-home wattlab \
    && mkdir -p /app/var /data/artifacts /data/scratch \
    && DJANGO_SECRET_KEY=collectstatic-at-build-only python manage.py collectstatic --no-input -v 0 \
    && chown -R wattlab /app/var /data
USER wattlab
EXPOSE 8000
# A production server: worker processes keep their database connections (CONN_MAX_AGE),
# threads serve the many small HTMX polls of the live pages. WEB_CONCURRENCY (gunicorn's
# own variable) sets the number of processes.
CMD ["gunicorn", "webapp.wsgi", "--bind", "0.0.0.0:8000", "--threads", "4"]

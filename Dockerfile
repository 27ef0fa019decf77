# One image for the web app and the GPU worker. For GPU trainings through PyTorch,
# build FROM an image with CUDA and PyTorch instead (the NumPy path needs neither).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
WORKDIR /app
COPY pyproject.toml ./
COPY . .
RUN pip install -e . && useradd --create-home wattlab && mkdir -p /app/var \
    && chown -R wattlab /app/var
USER wattlab
EXPOSE 8000
# A production server: worker processes keep their database connections (CONN_MAX_AGE),
# threads serve the many small HTMX polls of the live pages.
CMD ["gunicorn", "webapp.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4"]

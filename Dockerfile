FROM python:3.12-slim
WORKDIR /app
COPY . .
# The runtime only (the test extra stays out), static files collected at build, and a user of
# its own: Celery warns about workers running as root, rightly.
RUN pip install --no-cache-dir -e . \
    && python manage.py collectstatic --noinput \
    && useradd --system --user-group --home-dir /app --no-create-home app \
    && chown -R app:app /app/var
USER app
ENV PYTHONUNBUFFERED=1

FROM python:3.12-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir -e . gunicorn && python manage.py collectstatic --noinput
ENV PYTHONUNBUFFERED=1

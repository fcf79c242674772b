# The example project, for docker-compose.yml: web, Celery worker and dispatcher share it.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# LICENSE: pyproject.toml names it as the package's license file.
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# The serve extra: gunicorn, and WhiteNoise for the admin's static files with DEBUG off.
RUN pip install --no-cache-dir -e ".[postgres,redis,serve]"
COPY example ./example
WORKDIR /app/example
# Build-time only: collectstatic reads the settings, which need no real secret with DEBUG on.
RUN DJANGO_DEBUG=1 DJANGO_STATIC_ROOT=/app/staticfiles python manage.py collectstatic --noinput -v 0
ENV DJANGO_STATIC_ROOT=/app/staticfiles
EXPOSE 8000
CMD ["gunicorn", "example_project.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2"]

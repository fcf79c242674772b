# The example project, for docker-compose.yml: web, Celery worker and dispatcher share it.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md* ./
COPY src ./src
RUN pip install --no-cache-dir -e ".[postgres,redis]" gunicorn
COPY example ./example
WORKDIR /app/example
EXPOSE 8000
CMD ["gunicorn", "example_project.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2"]

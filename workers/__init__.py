"""Celery entry point: `celery -A workers worker` and `celery -A workers beat`."""

from workers.celery_app import app

__all__ = ["app"]

"""Run by tests/project/test_settings.py in two pytest-xdist processes (not collected by
the suite itself: its name is not test_*.py). Each process checks that every part of it uses
one Redis database and writes that database's URL to CHOSEN_REDIS_PROBE/<worker>."""

import os
from pathlib import Path

import redis
from django.conf import settings
from django.core.cache import cache

from project.celery import app
from tests.conftest import redis_database


def test_every_part_of_this_process_uses_one_redis_database(worker_id):
    assert os.environ["REDIS_URL"] == settings.REDIS_URL
    assert app.conf.broker_url == settings.CELERY_BROKER_URL == settings.REDIS_URL
    cache.set(f"which-database-{worker_id}", 1)
    number = redis.Redis.from_url(settings.REDIS_URL).connection_pool.connection_kwargs["db"]
    for db in range(16):
        client = redis.Redis.from_url(redis_database(settings.REDIS_URL, db - number))
        assert bool(client.keys(f"*which-database-{worker_id}")) == (db == number), db
    Path(os.environ["CHOSEN_REDIS_PROBE"], worker_id).write_text(settings.REDIS_URL)

"""The real PostgreSQL and Redis the project's storage and queues run on are reachable and usable
with the URLs tests are given (later suites build on these fixtures)."""

import uuid

import pytest


@pytest.mark.needs_postgres
def test_postgres_round_trip(postgres_url):
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    table = f"ci_probe_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TEMP TABLE {table} (id bigint primary key, path text)"))
        conn.execute(sa.text(f"INSERT INTO {table} VALUES (1, 'a/dog.wav'), (2, 'b/rain.flac')"))
        rows = conn.execute(sa.text(f"SELECT path FROM {table} ORDER BY id")).scalars().all()
    engine.dispose()
    assert rows == ["a/dog.wav", "b/rain.flac"]


@pytest.mark.needs_redis
def test_redis_round_trip(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    key = f"clapsearch:ci:{uuid.uuid4().hex}"
    client.set(key, b"\x00\x01vector", ex=30)
    assert client.get(key) == b"\x00\x01vector"
    assert 0 < client.ttl(key) <= 30
    client.delete(key)

"""The API caps glibc's malloc arenas (memory stays flat under load, bench/soak.py), unless the
environment already says how many (MALLOC_ARENA_MAX wins) or the setting is 0."""

from __future__ import annotations

import platform
import sys

from service.app import limit_malloc_arenas


def test_arenas_are_capped_unless_the_environment_or_the_setting_says_otherwise(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(0) is False  # 0: glibc's default stays
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert limit_malloc_arenas(2) is True
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas(2) is False  # the operator's choice wins

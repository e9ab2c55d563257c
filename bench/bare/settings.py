"""The benchmarks' settings with one more URL: the bare baseline view of bench/api_reads.py."""

from bench.settings import *  # noqa: F403

ROOT_URLCONF = "bench.bare.urls"

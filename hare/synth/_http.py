"""The HTTP client library: ``httpx``, or ``httpx2`` (the same API, what recent ``openai`` releases
install)."""

try:
    import httpx2 as httpx  # noqa: F401
except ImportError:  # pragma: no cover - depends on what openai pulled in
    import httpx  # noqa: F401

"""Masking secrets in text that leaves a process (error lines, metrics records).

A secret is the value of any variable or resource setting whose name says it holds one
(TOKEN, KEY, SECRET, PASSWORD, ...). A backend's own error message may quote what it was
given, an API key in a URL for instance; such text is masked before it is printed or
recorded. Light: on every job's path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
MASK = "***"


def secret_values(*mappings: Mapping[str, str]) -> set[str]:
    found = set()
    for mapping in mappings:
        for key, value in mapping.items():
            if isinstance(value, str) and len(value) >= 6 and any(word in key.upper() for word in SECRET_WORDS):
                found.add(value)
    return found


def mask(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text

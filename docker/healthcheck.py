"""Docker HEALTHCHECK of sacred-board: exit 0 when the URL answers HTTP below 500 (401 of basic auth included).

python healthcheck.py [URL]    (default http://127.0.0.1:9000/; the slim image has no curl)
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:9000/"


def check(url: str = DEFAULT_URL, timeout: float = 4.0) -> int:
    """0 (healthy) when the server answers with a status below 500, else 1."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
        error.close()
    except (OSError, ValueError) as error:  # refused, timed out, bad URL
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    if status >= 500:
        print(f"unhealthy: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(check(*sys.argv[1:2]))

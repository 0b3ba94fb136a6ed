#!/usr/bin/env python3
"""Parse an OpenMetrics text exposition (lvsd's /metrics) read from stdin with the reference
parser of Python's prometheus_client (strict: it refuses a malformed exposition, a missing
"# EOF", a counter sample without "_total", a UNIT that is not the name's suffix...).

Prints one line per sample, `name{k="v",...} value` with the labels sorted by name (no braces
when there are none), so that tests can look samples up by a canonical key. Exits non-zero
with the parser's message when the exposition is invalid.

Install the parser with scripts/install-deps.sh (pip install prometheus-client, or Debian's
python3-prometheus-client).
"""
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def escape(v):
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def main():
    text = sys.stdin.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and friends
        sys.exit(f"invalid OpenMetrics exposition: {e!r}")
    seen = set()
    for fam in families:
        if fam.name in seen:
            sys.exit(f"invalid OpenMetrics exposition: family {fam.name} appears twice")
        seen.add(fam.name)
        for s in fam.samples:
            labels = ",".join(f'{k}="{escape(v)}"' for k, v in sorted(s.labels.items()))
            key = f"{s.name}{{{labels}}}" if labels else s.name
            print(f"{key} {s.value!r}")


if __name__ == "__main__":
    main()

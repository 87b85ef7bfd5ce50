"""Shared ending of the benchmarks that report a flat dict of figures."""

import json


def finish(result, as_json, width=22):
    """Print ``result`` as aligned lines (unless ``as_json``), then as one JSON line; return 0."""
    if not as_json:
        for k, v in result.items():
            print(f"{k:{width}s} {v}")
    print(json.dumps(result))
    return 0

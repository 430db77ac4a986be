"""Run public API calls in a fresh process and print what they returned, for the corpus.

``python tests/corpus/api_call.py '[{"call": "build_df03_with_embeddings", "args": [...],
"kwargs": {...}}, ...]'``: each call is a function of ``morphseq_build06.api``; ``{"result": i}`` in its arguments stands for the value call ``i``
returned. Exit as the CLI would: a UserError's exit code with one line, 70 otherwise.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any


def shown(value: Any) -> Any:
    """A returned value as JSON: a table by its columns, types and CSV text."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_csv") and hasattr(value, "dtypes"):
        return {"columns": [str(c) for c in value.columns], "dtypes": [str(t) for t in value.dtypes],
                "csv": value.to_csv(index=False).splitlines()}
    if isinstance(value, dict):
        return {str(k): shown(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shown(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


def main(program: str) -> int:
    from morphseq_build06 import api
    from morphseq_stages.errors import UserError

    results: list[Any] = []

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"result"}:
            return results[value["result"]]
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    for call in json.loads(program):
        function = getattr(api, call["call"])
        try:
            results.append(function(*resolve(call.get("args", [])), **resolve(call.get("kwargs", {}))))
        except UserError as exc:
            print(json.dumps([shown(r) for r in results], indent=1))
            print(f"{call['call']}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return exc.exit_code
        except Exception:
            print(json.dumps([shown(r) for r in results], indent=1))
            traceback.print_exc()
            return 70
    print(json.dumps([shown(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

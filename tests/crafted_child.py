"""Run crafted cases in this one process, each under a time limit; print one JSON object of outcomes.

The parent (tests/test_crafted_inputs.py) starts this under a memory limit (RLIMIT_AS), so a
case that tried to allocate without bound fails here instead of taking the test machine down.
A case is ``{"id": ..., "argv": [...]}`` (a ``revgnn-dgl`` command line, run through click's
runner) or ``{"id": ..., "code": "..."}`` (Python that should raise a user error).

    python tests/crafted_child.py CASES.json SECONDS_PER_CASE
"""

from __future__ import annotations

import json
import resource
import signal
import sys
import time
import traceback
from typing import Any, Dict


class CaseTimeout(BaseException):
    """The case ran past its time limit (a BaseException, so no ``except Exception`` swallows it)."""


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout()


def run_case(case: Dict[str, Any], seconds: float) -> Dict[str, Any]:
    from click.testing import CliRunner

    from revgnn_dgl.cli import cli
    from revgnn_dgl.errors import is_user_error

    outcome: Dict[str, Any] = {"exit_code": None, "output": "", "exception": None, "timed_out": False}
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        if "argv" in case:
            result = CliRunner().invoke(cli, case["argv"], catch_exceptions=True)
            outcome["exit_code"], outcome["output"] = result.exit_code, result.output
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                if isinstance(result.exception, CaseTimeout):
                    outcome["timed_out"] = True
                outcome["exception"] = "".join(traceback.format_exception(result.exception))[-3000:]
        else:
            try:
                exec(compile(case["code"], case["id"], "exec"), {"__name__": "__crafted__"})
                outcome["exit_code"] = 0
            except Exception as err:  # the outcome is what the test checks
                if is_user_error(err):
                    outcome["exit_code"], outcome["output"] = 1, f"Error: {' '.join(str(err).split())}\n"
                    outcome["multiline"] = "\n" in str(err)
                else:
                    outcome["exit_code"] = 99
                    outcome["exception"] = traceback.format_exc()[-3000:]
    except CaseTimeout:
        outcome["timed_out"] = True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    outcome["seconds"] = round(time.perf_counter() - start, 3)
    outcome["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return outcome


def main() -> None:
    with open(sys.argv[1]) as fh:
        cases = json.load(fh)
    seconds = float(sys.argv[2])
    signal.signal(signal.SIGALRM, _alarm)
    outcomes = {case["id"]: run_case(case, seconds) for case in cases}
    print(json.dumps(outcomes))


if __name__ == "__main__":
    main()

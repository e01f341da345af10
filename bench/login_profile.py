"""Where a login's server time goes, from py-spy's collapsed stacks (``login_bench.py
--profile DIR``): the share of samples whose stack passes through each step. Shares overlap
(a step inside another counts in both); idle event-loop samples are left out.

    python bench/login_profile.py DIR/py-spy-oidc-*.txt
"""

from __future__ import annotations

import sys
from collections import Counter

#: (label, a substring of a frame "function (module path:line)") in pipeline order
STEPS = [
    ("login start (route)", "start_login (transom/web/sso_routes.py"),
    ("  login state write", "create_login_state ("),
    ("OIDC verify", "verify_oidc ("),
    ("  check login state (read-only)", "check_login_state ("),
    ("  code exchange (HTTP)", "exchange_code ("),
    ("  id_token verify", "verify_id_token ("),
    ("SAML verify", "verify_saml ("),
    ("  python3-saml validation", "is_valid ("),
    ("complete_login", "complete_login ("),
    ("  SAML: replay cache + login state check (first in the transaction)", "check_response ("),
    ("  spend single-use marks", "spend ("),
    ("  find user", "find_or_create_user ("),
    ("  provisioning", "apply_login_provisioning ("),
    ("  group sync", "sync_user_groups ("),
    ("  audit", "record ("),
    ("  session", "start_session ("),
    ("session redirect", "session_redirect ("),
    ("SCIM create", "create_user (transom/scim"),
    ("ORM flush", "flush ("),
    ("COMMIT", "commit ("),
    ("writer lock wait", "acquire ("),
    ("uvicorn / starlette / fastapi", "run_asgi ("),
    ("thread-pool hop", "run_sync_in_worker_thread ("),
]
IDLE = ("select (selectors.py", "_worker (concurrent/futures/thread.py", "wait (threading.py",
        "run_forever (asyncio", "_run_once (asyncio")


def main() -> None:
    samples: Counter[str] = Counter()
    total = 0
    for path in sys.argv[1:]:
        with open(path) as handle:
            for line in handle:
                stack, _, count = line.rstrip().rpartition(" ")
                if not count.isdigit():
                    continue
                frames = stack.split(";")
                if any(i in frames[-1] for i in IDLE):
                    continue
                n = int(count)
                total += n
                for label, needle in STEPS:
                    if any(needle in frame for frame in frames):
                        samples[label] += n
    print(f"{total} busy samples")
    for label, _ in STEPS:
        if samples[label]:
            print(f"{label:<32}{samples[label] / total * 100:6.1f} %")


if __name__ == "__main__":
    main()

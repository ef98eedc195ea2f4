"""Run API, relay, feed consumer and dead-letter archiver together until Ctrl-C.

Development convenience for the quick start (production runs each command under its
own supervisor: systemd, Kubernetes, docker-compose). If one process exits, the others
are stopped too so a broken start is never half-running. On first start it prints a
bearer token for the user ``dev`` so the API can be tried at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "api": [str(BIN / "qa-api")],
    "relay": [str(BIN / "qa-relay")],
    "feed": [str(BIN / "qa-consumer"), "feed"],
    "dead-letters": [str(BIN / "qa-consumer"), "dead-letters"],
}
TOKEN_FILE = Path(".run/dev-token")


def dev_token() -> str:
    if TOKEN_FILE.exists():
        return TOKEN_FILE.read_text().strip()
    out = subprocess.run(
        [str(BIN / "qa-ops"), "tokens", "create", "--user", "dev"],
        check=True,
        capture_output=True,
        text=True,
    )
    TOKEN_FILE.parent.mkdir(exist_ok=True)
    TOKEN_FILE.write_text(out.stdout.strip() + "\n")
    TOKEN_FILE.chmod(0o600)
    return out.stdout.strip()


def main() -> int:
    token = dev_token()
    host = os.environ.get("QA_API_HOST", "127.0.0.1")
    port = os.environ.get("QA_API_PORT", "8000")
    procs = {name: subprocess.Popen(cmd) for name, cmd in COMMANDS.items()}
    print(
        f"==> running {', '.join(procs)}; API on http://{host}:{port}  (Ctrl-C stops all)\n"
        f"    dev token (user 'dev', saved in {TOKEN_FILE}): {token}\n"
        f"    try: curl -s -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json'"
        f' -d \'{{"title":"Why is the sky blue?","body":"...","subject":"physics",'
        f'"grade":7}}\' http://{host}:{port}/questions',
        flush=True,
    )
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    while not stopping:
        for name, proc in procs.items():
            code = proc.poll()
            if code is not None:
                print(f"==> {name} exited with {code}; stopping the others", file=sys.stderr)
                exit_code = code or 1
                stopping = True
                break
        time.sleep(0.2)
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

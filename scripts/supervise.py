"""Run API, relay, every subscriber, the dead-letter archiver and the console until Ctrl-C.

Development convenience for the quick start (production runs each command under its
own supervisor: systemd, Kubernetes, docker-compose). If one process exits, the others
are stopped too so a broken start is never half-running. It saves the settings it runs
with to ``.env`` and prints a bearer token for the user ``dev`` and an operator token for
``dev-operator`` (both re-created when they do not work on the database in use), so the
API and the console can be tried at once. The children run in their own sessions: Ctrl-C
reaches only this script, which stops each child once with SIGTERM.

Mail: unless ``QA_SMTP_URL`` is set, a development mail sink (aiosmtpd, a dev dependency)
listens on 127.0.0.1:1025 and prints every mail the notifier sends to this terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

BIN = Path(sys.executable).parent
# Every registered subscriber (entry points "qa.subscribers") runs as `qa-consumer run NAME`.
SUBSCRIBERS = sorted({point.name for point in entry_points(group="qa.subscribers")})
COMMANDS = {
    "api": [str(BIN / "qa-api")],
    "relay": [str(BIN / "qa-relay")],
    **{name: [str(BIN / "qa-consumer"), "run", name] for name in SUBSCRIBERS},
    "dead-letters": [str(BIN / "qa-consumer"), "dead-letters"],
    "console": [str(BIN / "qa-console")],
}
MAIL_SINK = [sys.executable, "-m", "aiosmtpd", "-n", "-l", "127.0.0.1:1025"]
TOKEN_FILE = Path(".run/dev-token")
OPERATOR_TOKEN_FILE = Path(".run/dev-operator-token")


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import devenv

    from outbox.settings import Settings

    devenv.save_env()
    settings = Settings()
    token = devenv.dev_token(TOKEN_FILE, "dev", "writer")
    operator = devenv.dev_token(OPERATOR_TOKEN_FILE, "dev-operator", "operator")
    host, port = settings.api_host, settings.api_port
    console = f"http://{settings.console_host}:{settings.console_port}"
    commands = dict(COMMANDS)
    if "QA_SMTP_URL" not in os.environ:
        commands["mail-sink"] = MAIL_SINK
    procs = {name: subprocess.Popen(cmd, start_new_session=True) for name, cmd in commands.items()}
    print(
        f"==> running {', '.join(procs)}; API on http://{host}:{port}  (Ctrl-C stops all)\n"
        f"    settings saved in {devenv.ENV_FILE} (every command in this checkout reads it)\n"
        f"    console on {console}: sign in with the operator token in {OPERATOR_TOKEN_FILE}:"
        f" {operator}\n"
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

"""The front ends of the engine service: the app attached to it, and the commands that
queue to it, show it and stop it (`subq run --detach`, `subq status`, `subq stop`).

The app and these commands only ever talk to the service through `subq.engine`'s client;
the service itself is engine/service.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from subq.engine import (
    EngineUnavailable,
    Settings,
    StateError,
    attach_engine,
    connect_engine,
    default_state_path,
    expand_paths,
    fmt_bytes,
    missing_file,
    saved_jobs,
    saved_work,
    summary,
)


def run_attached(paths: list[str], settings: Settings, state: Path | None) -> int:
    """`subq [PATHS]`: the app attached to the user's engine, which it starts if none runs.
    A dropped SSH session (SIGHUP) or SIGTERM ends this window only; the batch goes on."""
    from .app import SubqApp, _restore_terminal, hangup_handled

    state_path = state or default_state_path()
    try:
        # a restored queue starts paused, as in the app's own engine: nothing by surprise
        client = attach_engine(
            state_path, settings, paused=lambda: not paths and saved_work(state_path)
        )
    except EngineUnavailable as exc:
        print(f"subq: {exc}", file=sys.stderr)
        return 2
    app = SubqApp(client, start_paths=paths)

    def leave(signum: int, _frame: Any) -> None:
        if signum == signal.SIGTERM:
            _restore_terminal(app)
        client.close()
        os._exit(128 + signum)  # the terminal may be gone: nothing of ours is left to save

    with hangup_handled(leave):
        client.start()
        try:
            app.run()
        finally:
            client.close()
    if app.farewell:
        print(app.farewell)
    return app.return_code or 0


def run_detached(paths: list[str], settings: Settings, state: Path | None, quiet: bool) -> int:
    """`subq run --detach PATHS`: hand the files to the user's engine and return at once."""
    state_path = state or default_state_path()
    files = [str(p) for p in expand_paths(paths)]
    missing = [f for f in files if not os.path.exists(f)]  # a typo, or a glob that matched none
    for path in missing:
        print(f"subq: {path}: {missing_file(path)} (not queued)", file=sys.stderr)
    files = [f for f in files if f not in missing]
    if not files:
        print(f"subq: no media files in {' '.join(paths)}", file=sys.stderr)
        return 2
    try:
        client = attach_engine(state_path, settings)
    except EngineUnavailable as exc:
        print(f"subq: {exc}", file=sys.stderr)
        return 2
    try:
        client.add(files, settings)
        if client.paused:
            client.resume()  # asked to run them: a paused engine would only keep them
    finally:
        client.close()
    if not quiet:
        print(f"Queued {len(files)} file(s) to the engine (pid {client.pid}) for {state_path}:")
        for path in files:
            print(f"  {path}")
        print("`subq status` shows the queue, `subq` opens the app, `subq stop` ends it.")
    return 1 if missing else 0


def show_status(state: Path | None, as_json: bool) -> int:
    """`subq status [--json]`: the engine's queue as it is now; 1 when no engine runs (then
    the queue the state file keeps, which the next `subq` takes up)."""
    state_path = state or default_state_path()
    try:
        client = connect_engine(state_path, watch=False)
    except EngineUnavailable as exc:
        try:
            kept, unread = saved_jobs(state_path), ""
        except StateError as err:  # another version's file, or not one of ours
            kept, unread = [], str(err)
        if as_json:
            jobs = [job_json(j) for j in kept]
            print(json.dumps({"running": False, "jobs": jobs, "error": unread or None}, indent=2))
        else:
            print(f"subq: {exc}" + ("; the queue it keeps:" if kept else ""))
            print(summary(kept) if kept else unread, end="\n" if kept or unread else "")
        return 1
    jobs = client.jobs()
    if as_json:
        out = {
            "running": True,
            "pid": client.pid,
            "state": str(client.state),
            "paused": client.paused,
            "rss_bytes": client.rss_bytes,
            "models": [vars(m) for m in client.loaded_models],
            "jobs": [job_json(j) for j in jobs],
        }
        print(json.dumps(out, indent=2))
        return 0
    models = ", ".join(
        f"{m.name} on {m.device} ({fmt_bytes(m.bytes)})" for m in client.loaded_models
    )
    print(
        f"engine pid {client.pid} for {state_path}: {client.state}"
        f"{' (paused)' if client.paused and str(client.state) != 'paused' else ''}, "
        f"{fmt_bytes(client.rss_bytes or 0)} RSS; models: {models or 'none'}"
    )
    print(summary(jobs) if jobs else "the queue is empty")
    return 0


def job_json(job: Any) -> dict[str, Any]:
    """One job as `subq status --json` prints it."""
    return {
        "id": job.id,
        "path": job.path,
        "state": job.state.value,
        "stage": job.stage.value if job.stage else None,
        "language": job.language,
        "progress": job.fraction_done,
        "resume_from": job.resume_from,
        "outputs": list(job.outputs),
        "error": job.error,
        "flags": list(job.flags),
    }


def stop_service(state: Path | None) -> int:
    """`subq stop`: end the engine at its next safe point; the queue and checkpoints stay."""
    state_path = state or default_state_path()
    try:
        client = connect_engine(state_path)
    except EngineUnavailable as exc:
        print(f"subq: {exc}")
        return 0
    pid = client.pid
    client.start()
    stopped = client.stop_engine(timeout=60)
    print(
        f"stopped the engine (pid {pid}); the queue is kept"
        if stopped
        else f"asked the engine (pid {pid}) to stop; it has not ended yet"
    )
    return 0 if stopped else 1

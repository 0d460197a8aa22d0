"""``flowq worker MODULE[:ATTR]``: import user code, run a worker, stop on signals."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import Any

import anyio

from flowq.client import App
from flowq.errors import ValidationError
from flowq.registry import Registry, default_registry
from flowq.supervisor import Supervisor

__all__ = ["load_target", "names_an_app", "run_worker", "supervisor_of"]

log = logging.getLogger("flowq.worker")


def names_an_app(target: str) -> bool:
    """Whether ``MODULE:ATTR`` names a :class:`flowq.App` (which knows its database).

    Raises:
        ValidationError: The module cannot be imported.
    """
    module_name, _, attribute = target.partition(":")
    return bool(attribute) and isinstance(getattr(_import(module_name), attribute, None), App)


def _import(module_name: str) -> Any:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ValidationError(f"cannot import {module_name!r}: {exc}") from exc


def load_target(target: str, database_url: str | None, schema: str | None = None) -> App:
    """Import ``MODULE[:ATTR]`` and return the App to run.

    ``ATTR`` may name a :class:`flowq.App` (used as is, unless ``database_url`` is
    given) or a :class:`flowq.Registry`; without it, the module's ``@flowq.workflow``
    functions on ``flowq.default_registry`` are run. ``schema`` goes with
    ``database_url`` (a PostgreSQL schema).

    Raises:
        ValidationError: The module or attribute cannot be found or is of another kind,
            or ``schema`` differs from the schema of the App used as is.
    """
    module_name, _, attribute = target.partition(":")
    module = _import(module_name)
    if not attribute:
        return App(database_url, registry=default_registry, schema=schema)
    found: Any = getattr(module, attribute, None)
    if isinstance(found, App):
        if database_url is not None:
            return App(database_url, registry=found.registry, schema=schema)
        own = getattr(found.store, "schema", None)
        if schema is not None and schema != own:
            raise ValidationError(
                f"--schema {schema!r}, but the App {target!r} uses schema {own!r}; "
                "pass --database-url too to run it on another database or schema"
            )
        return found
    if isinstance(found, Registry):
        return App(database_url, registry=found, schema=schema)
    raise ValidationError(
        f"{target!r} should name a flowq.App or flowq.Registry, found {type(found).__name__}"
    )


def supervisor_of(app: App, args: argparse.Namespace) -> Supervisor:
    """The supervisor the command-line options describe (``flowq supervisor`` and
    ``flowq worker --supervise``)."""
    return app.create_supervisor(
        interval=args.interval,
        stuck_jobs_timeout=args.stuck_jobs_timeout,
        cleanup_jobs_days_to_keep=args.keep_jobs_days,
        cleanup_events_days_to_keep=args.keep_events_days,
    )


async def run_worker(args: argparse.Namespace) -> None:
    """Run one worker until SIGINT/SIGTERM (or until idle with ``--until-idle``)."""
    app = load_target(args.target, args.database_url, args.schema or None)
    if not len(app.registry):
        raise ValidationError(f"{args.target!r} registers no workflows")
    worker = app.create_worker(
        concurrency=args.concurrency,
        drain_timeout=args.drain_timeout,
        heartbeat_interval=args.heartbeat_interval,
        lease_timeout=args.lease_timeout,
        worker_id=args.worker_id,
        notify=not args.no_notify,
    )
    async with app:
        log.info(
            "flowq: worker %s on %r runs %s (concurrency %d)",
            worker.worker_id, app.store, ", ".join(app.registry.names()), worker.concurrency,
        )  # fmt: skip
        if args.until_idle:
            await worker.run_until_idle()
            return
        async with anyio.create_task_group() as tasks:

            async def stop_on_signal() -> None:
                """The first SIGINT/SIGTERM drains; a second one hands back at once."""
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    draining = False
                    async for received in signals:
                        name = signal.Signals(received).name
                        if not draining:
                            draining = True
                            log.info(
                                "flowq: %s received; draining for up to %.0fs (send it "
                                "again to hand running jobs back at once)",
                                name, worker.drain_timeout,
                            )  # fmt: skip
                            await worker.stop()
                            continue
                        log.warning(
                            "flowq: %s received again; handing %d running job(s) back now "
                            "(their recorded steps are kept)",
                            name, len(worker.running_jobs),
                        )  # fmt: skip
                        await worker.stop(drain_timeout=0)
                        return

            tasks.start_soon(stop_on_signal)
            if args.supervise:
                supervisor = supervisor_of(app, args)
                log.info("flowq: %r runs beside the worker", supervisor)
                tasks.start_soon(supervisor.run)
            await worker.run()
            tasks.cancel_scope.cancel()
        log.info("flowq: worker %s stopped", worker.worker_id)

"""Where results go: the Optuna storage and the MLflow tracking store.

Default (embedded, one machine): `mlruns/optuna.journal` (Optuna's journal file, safe for
several processes) and `sqlite:///mlruns/mlflow.db` with artifacts in `mlruns/artifacts/`.
Both can point elsewhere, e.g. `postgresql://...` and `http://mlflow-server:5000`.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import StoreError

DEFAULT_ROOT = Path("mlruns")
RDB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "postgresql+psycopg", "mysql", "mysql+pymysql")


def default_root() -> Path:
    return Path(os.environ.get("AUTOML_HOME", DEFAULT_ROOT)).resolve()


def default_storage_url(root: Path | None = None) -> str:
    return str((root or default_root()) / "optuna.journal")


def default_tracking_uri(root: Path | None = None) -> str:
    return f"sqlite:///{(root or default_root()) / 'mlflow.db'}"


def default_artifact_location(tracking_uri: str) -> str | None:
    """Artifacts beside a local SQLite store; a tracking server chooses its own."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return None


HEARTBEAT_SECONDS, GRACE_SECONDS = 60, 180  # a worker silent for 3 minutes is dead


def _rdb_storage(rdb_storage, url: str, attempts: int = 5):
    """Workers started together race to create the tables of a new database; the losers retry."""
    import random
    import time

    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return rdb_storage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS)
        except (IntegrityError, ProgrammingError, StorageInternalError):  # Optuna wraps a failed commit
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())


def open_storage(url: str | None = None):
    """An Optuna storage: an RDB URL (sqlite/postgresql/mysql) or a journal file path."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    url = url or default_storage_url()
    scheme = url.split("://", 1)[0] if "://" in url else None
    try:
        if scheme in RDB_SCHEMES:
            return _rdb_storage(RDBStorage, url)
        if scheme in (None, "file", "journal"):
            path = Path(url.split("://", 1)[1] if scheme else url)
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    except (optuna.exceptions.StorageInternalError, OSError, ImportError) as exc:
        raise StoreError(f"cannot open Optuna storage {url!r}: {exc}") from None
    except Exception as exc:  # sqlalchemy errors: bad host, bad credentials, locked database
        raise StoreError(f"cannot open Optuna storage {url!r}: {type(exc).__name__}: {exc}") from None
    raise StoreError(f"unsupported storage URL {url!r} (use a journal file path or sqlite://, postgresql://, mysql://)")

"""myapp.py: uploads saved on local disk at once, moved to S3 by Celery workers.

Web:     flask --app myapp run   (or gunicorn myapp:app)
Workers: celery -A myapp:celery worker -Q flask_store
"""

import logging
import os

from celery import Celery
from flask import Flask, request

from flask_store import Store
from flask_store.stores.queued import QueuedStore
from flask_store.transfer.celery import Transfer
from flask_store.transfer.steps import Step

log = logging.getLogger("myapp")


class TransferAndNotify(Transfer):
    """The seed's example task: act on each transfer's outcome (here, a log line)."""

    def transfer(self, store: QueuedStore, key: str) -> Step:
        outcome = super().transfer(store, key)
        if outcome == "done":
            log.info("%s reached the remote store", key)
        return outcome


app = Flask(__name__)
app.config.update(
    STORE_PROVIDER="queued",
    STORE_QUEUED_LOCAL={"PROVIDER": "local", "PATH": "uploads"},  # <instance>/uploads
    STORE_QUEUED_REMOTE={"PROVIDER": "s3", "S3_BUCKET": "myapp-files", "S3_REGION": "eu-west-1"},
    STORE_TRANSFER_EXECUTOR="celery",
    STORE_TRANSFER_DELETE_LOCAL=True,  # S3 serves the file once it is there
    STORE_CELERY_TASK="myapp.TransferAndNotify",
)
# Deployment settings from the environment: FLASK_STORE_QUEUED_LOCAL='{"PATH": ...}' and so on.
app.config.from_prefixed_env()

store = Store(app)
celery = Celery("myapp", broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"))
store.init_celery(celery)  # registers the task "flask_store.transfer" on this Celery


@app.post("/upload")
def upload() -> dict[str, str]:
    saved = store.Provider().save(request.files["file"])  # on local disk; the task is queued
    return {"key": saved.key, "url": saved.relative_url()}

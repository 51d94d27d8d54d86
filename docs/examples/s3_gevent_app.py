"""S3GeventStore: answer the upload at once, send the file to S3 in a greenlet."""

from gevent import monkey

monkey.patch_all()  # first of all: before Flask, boto3 or your own modules are imported

from typing import Any  # noqa: E402

from flask import Flask, request  # noqa: E402

from flask_store import Store  # noqa: E402

store = Store()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        STORE_PROVIDER="flask_store.stores.s3.S3GeventStore",
        STORE_S3_BUCKET="my-bucket",
        STORE_S3_REGION="eu-west-1",
        STORE_PATH="uploads",  # the key prefix inside the bucket
        STORE_STAGING_PATH="staging",  # <instance>/staging: files wait here for S3
    )
    app.config.update(config or {})
    store.init_app(app)

    @app.post("/upload")
    def upload() -> str:
        saved = store.Provider().save(request.files["afile"])  # on disk, upload queued
        return saved.relative_url()  # /flaskstore/<name>, before and after the upload

    return app


if __name__ == "__main__":
    from gevent.pywsgi import WSGIServer

    WSGIServer(("127.0.0.1", 5000), create_app()).serve_forever()

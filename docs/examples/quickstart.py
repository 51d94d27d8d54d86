"""The quick start: save an uploaded file and answer with its URL."""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from flask_store import Store

store = Store()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["STORE_DOMAIN"] = "http://127.0.0.1:5000"
    app.config["STORE_PATH"] = "uploads"  # a folder inside the app's instance folder
    app.config.update(test_config or {})
    store.init_app(app)

    @app.route("/upload", methods=["POST"])
    def upload() -> str:
        file = request.files.get("afile")
        provider = store.Provider()
        f = provider.save(file)
        return f.absolute_url()

    return app


if __name__ == "__main__":
    create_app().run()

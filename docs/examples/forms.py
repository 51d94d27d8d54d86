"""Flask-WTF: validate the upload with the form, then hand the file to the store."""

from __future__ import annotations

from typing import Any

from flask import Flask, redirect, render_template_string
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired, FileSize
from werkzeug.wrappers import Response

from flask_store import Store

store = Store()

IMAGES = ["png", "jpg", "jpeg", "gif", "webp"]


class AvatarForm(FlaskForm):  # type: ignore[misc]
    photo = FileField(
        "Your photo",
        validators=[
            FileRequired("Choose a photo."),
            FileAllowed(IMAGES, "Photos only: PNG, JPEG, GIF or WebP."),
            FileSize(max_size=2_000_000, message="Photos may be up to 2 MB."),
        ],
    )


PAGE = """
<form method="post" enctype="multipart/form-data">
  {{ form.csrf_token }}
  {{ form.photo.label }} {{ form.photo() }}
  {% for error in form.photo.errors %}<p class="error">{{ error }}</p>{% endfor %}
  <button>Upload</button>
</form>
"""


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "change me"  # Flask-WTF signs its CSRF tokens with it
    app.config["MAX_CONTENT_LENGTH"] = 3_000_000  # refuse absurd bodies before parsing
    app.config.update(test_config or {})
    store.init_app(app)

    @app.route("/avatar", methods=["GET", "POST"])
    def avatar() -> str | Response:
        form = AvatarForm()
        if form.validate_on_submit():
            saved = store.Provider(destination="avatars").save(form.photo.data)
            return redirect(saved.relative_url())
        return render_template_string(PAGE, form=form)

    return app

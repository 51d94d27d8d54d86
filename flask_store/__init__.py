"""Flask-Store: save uploaded files to a pluggable store and serve them back.

>>> from flask_store import Store
"""

from . import exceptions
from .extension import Store
from .file_wrapper import FileWrapper

__all__ = ["FileWrapper", "Store", "exceptions"]
__version__ = "0.2.0"

"""The hostile-input tests that serve files, run over both serving paths.

tests/test_hostile_input.py runs them with the default (``STORE_SERVE_FAST = "auto"``, the
fast path for these hook-less apps); importing them here runs each once more with the Flask
view and once with the fast path forced (:mod:`tests.serving_paths`), so FIFOs, sockets,
symlink loops, odd names and nested URL prefixes are answered alike by both.
"""

from __future__ import annotations

from tests.serving_paths import serving_path  # noqa: F401 - autouse: both paths
from tests.test_hostile_input import (  # noqa: F401 - collected here again
    odd_files,
    test_a_named_store_never_shares_a_url_with_a_folder_of_the_default,
    test_a_store_nested_by_its_own_url_prefix_gets_the_same_guarantee,
    test_a_symlink_to_a_file_inside_the_store_is_still_a_key,
    test_a_very_long_filename_gives_a_short_working_key,
    test_emoji_and_invisible_names_upload_and_serve,
    test_special_files_are_404_without_blocking,
)

"""Images: time and peak memory of checking and thumbnailing a 50-megapixel JPEG.

Run it with ``.venv/bin/python -m benchmarks.images_bench`` (``make test`` does not). A
photo-like 8660 x 5773 JPEG (noise over a gradient, so it compresses like a photo, with
EXIF and a GPS position) is generated once; then each step runs in a fresh child process,
which reports its own time and peak RSS (``ru_maxrss``), so no step inherits another's
memory:

- ``check_image``: the full check (``verify()``, a 1/8-scale decode, the polyglot scans);
- ``save_image``: the check, two thumbnails (64 x 64 and 400 x 300) and the metadata
  stripped from the original, into a LocalStore;
- ``save_image`` of the same photo saved as a progressive JPEG: libjpeg keeps every
  coefficient of a progressive image until its last scan, whatever the scale, so this one
  costs about 3 bytes per pixel (``STORE_IMAGE_MAX_PIXELS`` is what bounds it);
- a plain Pillow ``thumbnail()`` of the baseline file without ``draft()`` (what code that
  decodes the whole photo first costs), as the baseline.

The figures are written as a Markdown table on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

WIDTH, HEIGHT = 8660, 5773  # 50.0 megapixels

MAKE = """
from PIL import Image
gradient = Image.linear_gradient("L").resize((WIDTH, HEIGHT))
noise = Image.effect_noise((WIDTH, HEIGHT), 40)
image = Image.merge("RGB", (gradient, noise, Image.blend(gradient, noise, 0.5)))
exif = Image.Exif()
exif[0x010F] = "Bench camera"
exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
image.save(PATH, "JPEG", quality=90, exif=exif)
image.save(PROGRESSIVE, "JPEG", quality=90, exif=exif, progressive=True)
"""

#: Each step: code run in a fresh interpreter with ``PATH`` (the photo) and ``FOLDER`` set.
STEPS = {
    "check_image": """
from flask_store.images import check_image
with open(PATH, "rb") as photo:
    check_image(photo, filename="photo.jpg", max_pixels=60_000_000)
""",
    "save_image (2 thumbnails, metadata stripped)": """
from flask_store.images import save_image
from flask_store.stores.local import LocalStore
store = LocalStore(path=FOLDER, image_max_pixels=60_000_000)
save_image(store, PATH, thumbnails={"small": (64, 64), "card": (400, 300)}, strip_metadata=True)
""",
    "save_image of the same photo saved as a progressive JPEG": """
from flask_store.images import save_image
from flask_store.stores.local import LocalStore
store = LocalStore(path=FOLDER, image_max_pixels=60_000_000)
save_image(store, PROGRESSIVE, thumbnails={"small": (64, 64), "card": (400, 300)})
""",
    "baseline: Pillow thumbnail() without draft()": """
from PIL import Image
with Image.open(PATH) as image:
    image.load()
    image.thumbnail((400, 300))
    image.save(FOLDER + "/thumb.jpg")
""",
}

RUN = """
import json, resource, time
PATH, PROGRESSIVE, FOLDER = {path!r}, {progressive!r}, {folder!r}
import PIL.Image, flask_store.images, flask_store.stores.local  # imports are not the step
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
{code}
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": elapsed, "peak_kib": peak, "before_kib": before}}))
"""


def run_child(code: str) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter; its JSON report."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    report: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "photo.jpg")
        progressive = os.path.join(folder, "progressive.jpg")
        make = MAKE.replace("WIDTH", str(WIDTH)).replace("HEIGHT", str(HEIGHT))
        names = f"PATH, PROGRESSIVE = {path!r}, {progressive!r}\n"
        subprocess.run([sys.executable, "-c", names + make], check=True)
        size = os.path.getsize(path)
        print(f"{WIDTH} x {HEIGHT} JPEG ({WIDTH * HEIGHT / 1e6:.1f} Mpx, {size / 2**20:.1f} MiB)")
        print()
        print("| step | time | peak RSS | rise over the idle process |")
        print("|---|---|---|---|")
        for label, code in STEPS.items():
            out = os.path.join(folder, "out")
            os.makedirs(out, exist_ok=True)
            body = textwrap.dedent(code)
            code = RUN.format(path=path, progressive=progressive, folder=out, code=body)
            report = run_child(code)
            rise = (report["peak_kib"] - report["before_kib"]) / 1024
            print(
                f"| {label} | {report['seconds']:.2f} s | {report['peak_kib'] / 1024:.0f} MiB "
                f"| {rise:.0f} MiB |"
            )


if __name__ == "__main__":
    main()

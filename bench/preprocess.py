"""Preprocessing all 3,297 images: the project's decoder against the seed's method, in one script.

Each method runs in a fresh child process so peak memory (ru_maxrss) is its own.
Seed: a PIL loop into a Python list, `np.array`, then `/ 255` to float64.
Project: `decode_split`, both cores filling one preallocated uint8 array.
Target: >= 1,200 images/s and peak memory under 1 GB.
"""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SKIN_CANCER_DATA", REPO.parent / "shared" / "datasets" / "skin-cancer"))


def seed_method(paths: list[Path]):
    import numpy as np
    from PIL import Image

    images = [np.asarray(Image.open(path).convert("RGB").resize((224, 224))) for path in paths]
    return np.array(images) / 255


def project_method(paths: list[Path]):
    from resources.image_source import RawImageSource
    from skin_cancer_assets.assets.data import decode_split

    source = RawImageSource(location=str(DATA))
    entries = [{"path": str(path.relative_to(DATA))} for path in paths]
    images, failures = decode_split(source, entries, 224)
    assert not failures, failures
    return images


def measure(method: str) -> dict:
    paths = sorted(DATA.glob("*/*/*.jpg"))
    function = {"seed": seed_method, "project": project_method}[method]
    started = time.perf_counter()
    images = function(paths)
    seconds = time.perf_counter() - started
    return {
        "images": len(images),
        "images_per_s": len(images) / seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "dtype": str(images.dtype),
    }


def main() -> None:
    if len(sys.argv) == 2:
        print(json.dumps(measure(sys.argv[1])))
        return
    results = {}
    for method in ("seed", "project"):
        output = subprocess.run([sys.executable, __file__, method], check=True, capture_output=True, text=True).stdout
        results[method] = json.loads(output.strip().splitlines()[-1])
    seed, project = results["seed"], results["project"]
    print(f"{'method':<10}{'images':>8}{'images/s':>11}{'peak MB':>10}  dtype")
    for name, r in results.items():
        print(f"{name:<10}{r['images']:>8}{r['images_per_s']:>11.0f}{r['peak_mb']:>10.0f}  {r['dtype']}")
    print(
        f"ratio project/seed: speed {project['images_per_s'] / seed['images_per_s']:.2f}x, "
        f"peak memory {project['peak_mb'] / seed['peak_mb']:.2f}x"
    )
    print(
        f"targets: >= 1200 images/s: {'met' if project['images_per_s'] >= 1200 else 'MISSED'}; "
        f"peak < 1024 MB: {'met' if project['peak_mb'] < 1024 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()

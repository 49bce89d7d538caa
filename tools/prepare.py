"""Fetch and build the embedded models and named data sets (no-op when they are cached)."""

import time

from common import DATASETS, EMBEDDED, load_dataset, resolve_model
from common.data import WRITTEN_SETS
from common.registry import cache_dir


def main() -> None:
    start = time.perf_counter()
    for name in EMBEDDED:
        if not name.startswith("tiny-"):
            resolve_model(name)
    for name in DATASETS:
        if name not in WRITTEN_SETS:
            load_dataset(name)
    print(f"== models and data ready in {cache_dir().name}/ ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()

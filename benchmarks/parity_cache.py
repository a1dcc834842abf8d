"""The per-image results of a parity run, one atomic JSON file per (backend key, image) under OUT/cache/.

``OUT/cache/KEY/IMAGE_ID.json`` holds ``{"file", "image_id", "seconds", "people": [{"keypoints":
[x, y, score] * 17, "score"}]}``; an absent, unreadable or mismatched file counts as not computed, so an
interrupted run continues where it stopped.
"""
from __future__ import annotations

import json
from pathlib import Path


def cache_path(out: Path, key: str, image) -> Path:
    return out / "cache" / key / f"{image.id}.json"


def read_cached(path: Path, image) -> dict | None:
    """A cached result of ``image``, or None when absent, unreadable or of another file."""
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if entry.get("file") == image.path.name and isinstance(entry.get("people"), list) else None


def person_entries(people) -> list[dict]:
    """``Person`` objects as the cache stores them: image-pixel keypoints ``[x, y, score] * 17`` and the score."""
    return [{"keypoints": [float(v) for v in p.keypoints.reshape(-1)], "score": float(p.score)} for p in people]


def store_result(out: Path, key: str, image, seconds: float, people) -> None:
    """Write one image's people (and the time they took) to the cache, atomically."""
    from runtime.results import write_json

    write_json(cache_path(out, key, image),
               {"file": image.path.name, "image_id": image.id, "seconds": seconds, "people": person_entries(people)})


def load_results(name: str, key: str, out: Path, images: list) -> dict[int, dict]:
    """Every image's cached result for backend ``name`` (cache key ``key``), by image id."""
    results = {}
    for image in images:
        entry = read_cached(cache_path(out, key, image), image)
        if entry is None:
            raise RuntimeError(f"{name}: no cached result for {image.path.name}")
        results[image.id] = entry
    return results

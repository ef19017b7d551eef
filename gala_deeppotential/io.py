"""Safe model files (tensors plus JSON-able metadata) and the records they hold.

A model file is written with :func:`torch.save` and holds only a dict of
tensors and a JSON string, so :func:`load` reads it with
``torch.load(weights_only=True)``: no arbitrary object is ever unpickled.
"""

from __future__ import annotations

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "claim_folder",
    "load",
    "quantity_to_json",
    "save",
    "state_checksum",
    "units_from_json",
    "units_to_json",
]

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import astropy.units as u
import torch
from gala.units import DimensionlessUnitSystem, UnitSystem

FORMAT = "gala-deeppotential"
FORMAT_VERSION = 1


def save(
    path: str | os.PathLike,
    *,
    kind: str,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any],
) -> Path:
    """Write tensors and plain metadata to a model file.

    Parameters
    ----------
    path : str or path-like
        Destination; parent folders are created. The write is atomic: a
        partial file never replaces a good one.
    kind : str
        What the file holds (``"potential"``, ``"flow_ensemble"``, ...);
        :func:`load` can insist on it.
    tensors : mapping of str to :class:`torch.Tensor`
        Saved on the CPU, detached.
    metadata : mapping
        Anything :func:`json.dumps` accepts: versions, units, scalers,
        hyperparameters.

    Returns
    -------
    path : :class:`pathlib.Path`
    """
    from . import __version__

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "package_version": __version__,
        "torch_version": torch.__version__,
        **metadata,
    }
    try:
        meta_json = json.dumps(meta)
    except TypeError as err:
        raise TypeError(f"model metadata must be JSON-serialisable: {err}") from None
    payload = {
        "metadata": meta_json,
        "tensors": {k: t.detach().cpu().contiguous() for k, t in tensors.items()},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load(
    path: str | os.PathLike, *, kind: str | None = None, device: str = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a model file written by :func:`save`, safely.

    Parameters
    ----------
    path : str or path-like
        The model file.
    kind : str, optional
        If given, the file must hold this kind of model.
    device : str
        Where to put the tensors.

    Returns
    -------
    tensors : dict of str to :class:`torch.Tensor`
    metadata : dict

    Raises
    ------
    ValueError
        If the file is not a gala-deeppotential model file, is from a newer
        format version, or holds another kind of model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{path} is not a readable gala-deeppotential model file ({err}); "
            "model files are written by save() / .save()"
        ) from None
    if not isinstance(payload, dict) or set(payload) != {"metadata", "tensors"}:
        raise ValueError(f"{path} is not a gala-deeppotential model file")
    meta = json.loads(payload["metadata"])
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gala-deeppotential model file")
    if meta["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"{path} uses model format {meta['format_version']}, newer than this "
            f"package reads ({FORMAT_VERSION}); upgrade gala-deeppotential"
        )
    if kind is not None and meta["kind"] != kind:
        raise ValueError(f"{path} holds a {meta['kind']!r} model, not a {kind!r}")
    return dict(payload["tensors"]), meta


def state_checksum(
    tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> str:
    """SHA-256 of a network's configuration and exact weights."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def units_to_json(units: UnitSystem) -> list[str] | None:
    """A unit system as the strings of its base units; None if dimensionless."""
    if isinstance(units, DimensionlessUnitSystem):
        return None
    return [str(unit) for unit in units.to_dict().values()]


def units_from_json(names: list[str] | None) -> UnitSystem | None:
    """The unit system :func:`units_to_json` recorded (None: dimensionless)."""
    return None if names is None else UnitSystem(*map(u.Unit, names))


def quantity_to_json(q: u.Quantity | float) -> list:
    """A Quantity (or a plain number) as ``[value, unit string]``."""
    q = u.Quantity(q)
    return [float(q.value), str(q.unit)]


def claim_folder(
    folder: Path, manifest: Mapping[str, Any], *, name: str, kind: str, other: str
) -> Path:
    """Claim ``folder`` for the work ``manifest`` describes, or check it holds it.

    The work is identified by ``manifest["sha256"]``: a folder whose manifest
    file ``name`` records another raises (``other`` says what it holds, e.g.
    "a checkpoint of a different fit (other stars or settings)"), as does a
    folder with files but no manifest (``kind`` names the missing
    checkpoint); an empty or new folder gets the manifest.
    """
    path = folder / name
    if path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8")).get("sha256")
        if recorded != manifest["sha256"]:
            raise ValueError(
                f"{folder} holds {other}; pass a new checkpoint_dir, or delete "
                "that folder to start over"
            )
        return folder
    if folder.is_dir() and any(folder.iterdir()):
        raise ValueError(
            f"{folder} is not empty and holds no {kind} ({name}); pass a new or "
            "empty folder as checkpoint_dir"
        )
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return folder

"""The self-contained model file: weights + config + metadata in one ``torch.save`` archive that
holds only tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``
(no pickle code is ever executed).  A sha256 over the weights detects tampering; a residual or
SVR file names its parent file (relative path + the parent file's sha256).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import zipfile

import torch

FORMAT = "appareal-age-model"
VERSION = 1


class ModelFileError(ValueError):
    """The file is not a usable appareal model file (wrong format, tampered, other architecture)."""


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensors_sha256(tensors: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        v = tensors[k]
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(v).encode())
    return h.hexdigest()


def save_model_file(path: str, *, kind: str, config: dict, metadata: dict, tensors: dict,
                    parent_path: str | None = None) -> str:
    """Write atomically; returns the path."""
    parent = None
    if parent_path:
        parent_abs = os.path.abspath(parent_path)
        out_dir = os.path.dirname(os.path.abspath(path))
        parent = {"path": os.path.relpath(parent_abs, out_dir), "abs_path": parent_abs,
                  "sha256": file_sha256(parent_abs)}
    tensors = {k: v.detach().cpu().contiguous() if isinstance(v, torch.Tensor) else v
               for k, v in tensors.items()}
    blob = {"format": FORMAT, "version": VERSION, "kind": kind, "config": config,
            "metadata": metadata, "tensors": tensors, "tensors_sha256": tensors_sha256(tensors),
            "parent": parent}
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = path + ".tmp"
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


def load_model_file(path: str) -> dict:
    """Load and verify.  Raises ModelFileError with a clear message for anything unexpected."""
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such model file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(
            f"{path}: refused to load: the file contains objects other than tensors and plain values "
            f"(not an appareal model file, or tampered); nothing in it was executed ({exc.__class__.__name__})") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable model file (corrupt or truncated?): {exc}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        if isinstance(blob, dict) and blob and all(isinstance(v, torch.Tensor) for v in blob.values()):
            raise ModelFileError(f"{path}: this is a bare state dict, not an appareal model file "
                                 "(train with modeling.train to get one)")
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ModelFileError(f"{path}: not an appareal model file (format {found!r})")
    if blob.get("version") != VERSION:
        raise ModelFileError(f"{path}: model file version {blob.get('version')} is not supported (expected {VERSION})")
    tensors = blob.get("tensors")
    if not isinstance(tensors, dict) or tensors_sha256(tensors) != blob.get("tensors_sha256"):
        raise ModelFileError(f"{path}: weights do not match their recorded checksum (the file was modified)")
    return blob


def resolve_parent(path: str, blob: dict) -> str | None:
    parent = blob.get("parent")
    if not parent:
        return None
    here = os.path.dirname(os.path.abspath(path))
    candidates = [os.path.normpath(os.path.join(here, parent["path"])), parent.get("abs_path")]
    for cand in candidates:
        if cand and os.path.isfile(cand):
            if file_sha256(cand) != parent["sha256"]:
                raise ModelFileError(f"{path}: its parent model {cand} has changed since this model "
                                     "was trained on it (sha256 differs)")
            return cand
    raise ModelFileError(f"{path}: parent model {parent['path']} not found (looked at {candidates})")

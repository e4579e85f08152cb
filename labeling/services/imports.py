"""Seeding the platform from existing face datasets.

Two paths:

* `import_face_file`: a photo with a real age (UTKFace, FG-NET, a CSV) goes through the upload
  service (`labeling.services.uploads.create_photo`): normalisation, face detection, 40%-margin
  crop — exactly like a player's upload.
* `import_given_photo`: the APPA-REAL release, whose images come with their `_face.jpg` crops and
  crowd votes; the crop is stored as given and the votes become votes of anonymous imported raters.

Both are idempotent through `Photo.import_key` ("<dataset>:<path>"): a photo already imported is
skipped, so an interrupted import is resumed by running it again.  Each photo is written in its
own transaction together with its votes; when anything fails, its files are removed again and no
row remains.  Bad input is returned as a message, never raised past the caller's loop.

Importer-created rows are never players: the owner is a per-dataset account of kind IMPORTED and
the raters are IMPORTED accounts too, so they earn no points and stay off the leaderboards.
"""
from __future__ import annotations

import csv
import datetime as dt
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from labeling.imaging import ImageRejected, encode_jpeg, normalise_image
from labeling.models import Gender, Photo, PhotoSource, PlayerKind, PlayerProfile, Split, Vote

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
MAX_IMPORT_BYTES = 50 * 1024 * 1024
UTKFACE_RE = re.compile(r"^(\d{1,3})_(\d)_(?:\d_)?\d+")
FGNET_RE = re.compile(r"^(\d{3})A(\d{2})[a-zA-Z]?$")


class BadRow(ValueError):
    """One input row or file that cannot be imported; the message says why."""


@dataclass
class ImportSummary:
    imported: int = 0
    already_there: int = 0
    votes: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (where, why)

    def fail(self, where: str, why: str) -> None:
        self.failed.append((where, why))

    def lines(self) -> list[str]:
        out = [f"imported {self.imported} photos ({self.votes} votes), {self.already_there} already there, "
               f"{len(self.failed)} failed"]
        out += [f"  {where}: {why}" for where, why in self.failed]
        return out


# --- accounts the imported rows belong to ----------------------------------------------------------

def _imported_account(username: str, **profile) -> object:
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    PlayerProfile.objects.get_or_create(user=user, defaults={"kind": PlayerKind.IMPORTED, **profile})
    return user


def dataset_owner(dataset: str):
    """The account that owns a dataset's imported photos (inactive: nobody logs in as it)."""
    return _imported_account(f"import-{dataset}"[:150])


class RaterPool:
    """Anonymous imported raters.  A release gives no rater ids, only each vote's worker age and
    gender, so raters are keyed by (worker age, worker gender, slot): the n-th vote on a photo by a
    worker of that age and gender goes to slot n.  That keeps one vote per rater per photo and
    carries worker_age / worker_gender through a later export (birth year = this year - age)."""

    def __init__(self, dataset: str):
        self.dataset = dataset
        self._cache: dict[tuple, int] = {}
        self._year = dt.date.today().year

    def rater_id(self, worker_age: int | None, worker_gender: str, slot: int) -> int:
        key = (worker_age, worker_gender, slot)
        if key not in self._cache:
            name = f"rater-{self.dataset}-{'x' if worker_age is None else worker_age}-{worker_gender or 'x'}-{slot}"
            birth = None if worker_age is None else self._year - worker_age
            self._cache[key] = _imported_account(name[:150], birth_year=birth, gender=worker_gender).pk
        return self._cache[key]


# --- parsing (pure) ---------------------------------------------------------------------------------

def parse_age(value, what: str = "age") -> int:
    text = "" if value is None else str(value).strip()
    if not text:
        raise BadRow(f"{what} is missing")
    try:
        number = float(text)
    except ValueError:
        raise BadRow(f"{what} {text!r} is not a number") from None
    if number != number or number != round(number):
        raise BadRow(f"{what} {text!r} is not a whole number of years")
    age = int(number)
    if not 0 <= age <= 100:
        raise BadRow(f"{what} {age} is outside 0-100")
    return age


def parse_gender(value) -> str:
    text = (value or "").strip().lower()
    return {"m": Gender.MALE, "male": Gender.MALE, "man": Gender.MALE, "f": Gender.FEMALE, "female": Gender.FEMALE,
            "woman": Gender.FEMALE, "other": Gender.OTHER}.get(text, Gender.UNSPECIFIED)


def utkface_age(name: str) -> int:
    """`AGE_GENDER_RACE_DATE.jpg.chip.jpg` (RACE may be missing)."""
    match = UTKFACE_RE.match(name)
    if not match:
        raise BadRow("file name is not AGE_GENDER_RACE_DATE.jpg(.chip.jpg)")
    return parse_age(match.group(1))


def fgnet_age(name: str) -> int:
    """`078A11.JPG`: subject 078 at age 11 (a trailing letter marks a second photo at that age)."""
    match = FGNET_RE.match(Path(name).stem)
    if not match:
        raise BadRow("file name is not FG-NET's SSSAyy[x].JPG")
    return parse_age(match.group(2))


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def csv_labels(path: Path) -> tuple[dict[str, object], list[tuple[str, str]]]:
    """{file name: age or BadRow} from a CSV with columns file_name (or file/path/image) and real_age
    (or age); duplicates and bad ages are reported per row."""
    labels: dict[str, object] = {}
    problems: list[tuple[str, str]] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        name_col = next((columns[c] for c in ("file_name", "file", "path", "image", "filename") if c in columns), None)
        age_col = next((columns[c] for c in ("real_age", "age") if c in columns), None)
        if not name_col or not age_col:
            raise BadRow(f"{path}: needs a file_name and a real_age column, has {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            name = (row.get(name_col) or "").strip()
            where = f"{path.name}:{line}"
            if not name:
                problems.append((where, "file name is missing"))
                continue
            if name in labels:
                problems.append((f"{where} ({name})", "duplicate file name; the first row is used"))
                continue
            try:
                labels[name] = parse_age(row.get(age_col), "real_age")
            except BadRow as exc:
                labels[name] = exc
    return labels, problems


# --- writing -----------------------------------------------------------------------------------------

def already_imported(import_key: str) -> bool:
    return Photo.objects.filter(import_key=import_key).exists()


def import_face_file(path: Path, *, real_age: int, import_key: str, owner, consent: bool) -> Photo:
    """One photo through the upload pipeline.  Raises BadRow (nothing written) when refused."""
    from labeling.services.uploads import UploadRejected, create_photo

    try:
        with open(path, "rb") as fh:
            # The operator's --consent covers the collection's use for research here: all scopes.
            return create_photo(owner=owner, image=fh, real_age=real_age, consent=consent,
                                consent_export=consent, consent_training=consent,
                                source=PhotoSource.IMPORT, import_key=import_key)
    except UploadRejected as exc:
        raise BadRow(exc.message) from None
    except IntegrityError:
        raise BadRow("imported meanwhile by another run (same import key)") from None
    except OSError as exc:
        raise BadRow(f"cannot read the file ({exc.strerror or exc})") from None


def _read_image(path: Path, what: str):
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_IMPORT_BYTES + 1)
    except OSError as exc:
        raise BadRow(f"cannot read {what} {path.name} ({exc.strerror or exc})") from None
    if len(data) > MAX_IMPORT_BYTES:
        raise BadRow(f"{what} {path.name} is larger than {MAX_IMPORT_BYTES // 2**20} MB")
    try:
        return normalise_image(data, max_pixels=settings.APPAREAL["UPLOAD_MAX_PIXELS"])
    except ImageRejected as exc:
        raise BadRow(f"{what} {path.name}: {exc.message}") from None


def import_given_photo(*, image_path: Path, face_path: Path, real_age: int, import_key: str, owner, consent: bool,
                       split: str = Split.NONE, votes: list[tuple[int, int | None, str]] = (),
                       raters: RaterPool | None = None) -> Photo:
    """One photo whose face crop comes with it (APPA-REAL), with its votes (age, worker age, worker
    gender).  Both images are normalised like uploads (RGB, no metadata).  Raises BadRow with
    nothing written."""
    from labeling.services.votes import refresh_consensus

    raters = raters or RaterPool("import")
    image = _read_image(image_path, "image")
    face = _read_image(face_path, "face crop")
    photo = Photo(owner=owner, source=PhotoSource.IMPORT, import_key=import_key, real_age=real_age, consent=consent,
                  consent_export=consent, consent_training=consent,
                  split=split, face={"source": "given crop", "file": face_path.name}, shuffle_key=random.random())
    photo.image.save("original.jpg", ContentFile(encode_jpeg(image)), save=False)
    photo.face_image.save("face.jpg", ContentFile(encode_jpeg(face, quality=95)), save=False)
    # Rater accounts first, outside the photo's transaction: a failed photo must not roll back an
    # account the pool has cached.
    slots: Counter = Counter()
    voter_ids = []
    for _age, worker_age, gender in votes:
        voter_ids.append(raters.rater_id(worker_age, gender, slots[(worker_age, gender)]))
        slots[(worker_age, gender)] += 1
    written = [photo.image.name, photo.face_image.name]
    try:
        with transaction.atomic():
            photo.save()
            if votes:
                Vote.objects.bulk_create(
                    [Vote(photo=photo, voter_id=voter_id, age=age, voter_kind=PlayerKind.IMPORTED)
                     for voter_id, (age, _w, _g) in zip(voter_ids, votes)],
                    batch_size=1000,
                )
                refresh_consensus(photo.pk)
    except IntegrityError:
        for name in written:
            photo.image.storage.delete(name)
        raise BadRow("imported meanwhile by another run (same import key)") from None
    except Exception:
        for name in written:
            photo.image.storage.delete(name)
        raise
    return photo


# --- whole datasets -----------------------------------------------------------------------------------

def _identity(iterable, **_kw):
    return iterable


def _optional_age(value) -> int | None:
    text = (value or "").strip()
    if not text:
        return None
    try:
        age = int(float(text))
    except ValueError:
        return None
    return age if 0 <= age <= 120 else None


def read_appareal_votes(path: Path, summary: ImportSummary) -> dict[str, list[tuple[int, int | None, str]]]:
    """{file name: [(apparent age, worker age, worker gender)]} from gt_{split}.csv; bad rows reported."""
    votes: dict[str, list] = {}
    if not path.is_file():
        return votes
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"file_name", "apparent_age"} <= set(reader.fieldnames):
            summary.fail(path.name, f"needs columns file_name and apparent_age, has {reader.fieldnames}")
            return votes
        for line, row in enumerate(reader, start=2):
            name = (row.get("file_name") or "").strip()
            try:
                age = parse_age(row.get("apparent_age"), "apparent_age")
            except BadRow as exc:
                summary.fail(f"{path.name}:{line} ({name})", f"vote skipped: {exc}")
                continue
            votes.setdefault(name, []).append((age, _optional_age(row.get("worker_age")),
                                               parse_gender(row.get("worker_gender"))))
    return votes


def import_appareal_dir(root: Path, *, consent: bool, dataset: str = "appareal", splits=("train", "valid", "test"),
                        limit: int | None = None, progress=_identity) -> ImportSummary:
    """The APPA-REAL release layout: {split}/NAME.jpg, {split}/NAME.jpg_face.jpg, gt_avg_{split}.csv,
    gt_{split}.csv.  Photos keep the release's split; votes become imported raters' votes."""
    summary = ImportSummary()
    owner = dataset_owner(dataset)
    raters = RaterPool(dataset)
    done = set(Photo.objects.filter(import_key__startswith=f"{dataset}:").values_list("import_key", flat=True))
    found_any = False
    for split in splits:
        avg_path = root / f"gt_avg_{split}.csv"
        if not avg_path.is_file():
            continue
        found_any = True
        votes = read_appareal_votes(root / f"gt_{split}.csv", summary)
        with open(avg_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"file_name", "real_age"} <= set(reader.fieldnames):
                summary.fail(avg_path.name, f"needs columns file_name and real_age, has {reader.fieldnames}")
                continue
            rows = list(enumerate(reader, start=2))
        seen: set[str] = set()
        for line, row in progress(rows, desc=split, unit="photo"):
            if limit is not None and summary.imported >= limit:
                return summary
            name = (row.get("file_name") or "").strip()
            where = f"{avg_path.name}:{line} ({name})"
            key = f"{dataset}:{split}/{name}"
            if name in seen:
                summary.fail(where, "duplicate file name; the first row is used")
                continue
            seen.add(name)
            if key in done:
                summary.already_there += 1
                continue
            try:
                if not name or "/" in name or "\\" in name or name.startswith("."):
                    raise BadRow("file name is missing or not a plain file name")
                real_age = parse_age(row.get("real_age"), "real_age")
                image_path, face_path = root / split / name, root / split / f"{name}_face.jpg"
                if not image_path.is_file():
                    raise BadRow(f"image {split}/{name} is missing")
                if not face_path.is_file():
                    raise BadRow(f"face crop {split}/{name}_face.jpg is missing")
                photo_votes = votes.get(name, [])
                import_given_photo(image_path=image_path, face_path=face_path, real_age=real_age, import_key=key,
                                   owner=owner, consent=consent, split=split, votes=photo_votes, raters=raters)
            except BadRow as exc:
                summary.fail(where, str(exc))
                continue
            done.add(key)
            summary.imported += 1
            summary.votes += len(photo_votes)
    if not found_any:
        summary.fail(str(root), "no gt_avg_{train,valid,test}.csv here: not an APPA-REAL layout")
    return summary


LABELLERS = {"utkface": utkface_age, "fgnet": fgnet_age}


def import_faces_dir(root: Path, *, labels: str, consent: bool, dataset: str | None = None, limit: int | None = None,
                     progress=_identity) -> ImportSummary:
    """A folder of face photos with real ages in the file names (utkface, fgnet) or a CSV
    (labels="csv:FILE"), each through the upload pipeline.  Faces that fail are listed."""
    summary = ImportSummary()
    csv_map: dict[str, object] | None = None
    if labels.startswith("csv:"):
        csv_path = Path(labels[4:])
        try:
            csv_map, problems = csv_labels(csv_path)
        except (BadRow, OSError) as exc:
            summary.fail(str(csv_path), str(exc))
            return summary
        for where, why in problems:
            summary.fail(where, why)
        dataset = dataset or "csv"
    elif labels in LABELLERS:
        dataset = dataset or labels
    else:
        raise ValueError(f"unknown labels {labels!r}: use utkface, fgnet or csv:FILE")
    owner = dataset_owner(dataset)
    done = set(Photo.objects.filter(import_key__startswith=f"{dataset}:").values_list("import_key", flat=True))
    files = image_files(root)
    if csv_map is not None:
        by_name: dict[str, Path] = {}
        base_names = Counter(path.name for path in files)
        rel_names = {path.relative_to(root).as_posix() for path in files}
        for path in files:
            by_name[path.relative_to(root).as_posix()] = path
            by_name.setdefault(path.name, path)
        items = []
        for name in csv_map:
            if name not in by_name:
                summary.fail(name, "listed in the CSV but not found in the folder")
            elif base_names[name] > 1 and name not in rel_names:
                summary.fail(name, f"{base_names[name]} files in the folder have this name; give the path relative "
                                   "to the folder")
            else:
                items.append((name, by_name[name]))
    else:
        items = [(path.relative_to(root).as_posix(), path) for path in files]
    for rel, path in progress(items, desc=dataset, unit="photo"):
        if limit is not None and summary.imported >= limit:
            break
        key = f"{dataset}:{rel}"[:255]
        if key in done:
            summary.already_there += 1
            continue
        try:
            if csv_map is not None:
                age = csv_map[rel]
                if isinstance(age, BadRow):
                    raise age
            else:
                age = LABELLERS[labels](path.name)
            import_face_file(path, real_age=age, import_key=key, owner=owner, consent=consent)
        except BadRow as exc:
            summary.fail(rel, str(exc))
            continue
        done.add(key)
        summary.imported += 1
    return summary

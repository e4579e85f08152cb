"""Photos, their face crops, votes, reports and player profiles.

Consensus fields on Photo are a cache of `labeling.consensus.compute_consensus(votes)`; they are
written only by `labeling.services` (and can be rebuilt by `manage.py recompute_consensus`).
"""
import os
import uuid

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q


def _random_name(folder: str, ext: str) -> str:
    token = uuid.uuid4().hex
    return f"{folder}/{token[:2]}/{token}.{ext}"


def original_upload_to(instance, filename):  # noqa: ARG001 - the user's file name is never used
    return _random_name("originals", "jpg")


def face_upload_to(instance, filename):  # noqa: ARG001
    return _random_name("faces", "jpg")


class PrivateStorage(FileSystemStorage):
    """Files under settings.PRIVATE_ROOT, which is never served as media: the originals.

    The root is read at every use (tests and commands change the setting), and there is no URL:
    an original is served only through the authenticated view (privacy.views.originals).
    """

    @property
    def base_location(self):
        return str(settings.PRIVATE_ROOT)

    @property
    def location(self):
        return os.path.abspath(self.base_location)

    @property
    def base_url(self):
        return None

    def url(self, name):
        raise ValueError("Originals are private: link to the photo's original view instead.")


_PRIVATE_STORAGE = PrivateStorage()


def private_storage() -> PrivateStorage:
    return _PRIVATE_STORAGE


AGE_VALIDATORS = [MinValueValidator(0), MaxValueValidator(100)]


class PlayerKind(models.TextChoices):
    HUMAN = "human", "Human player"
    SIMULATED = "simulated", "Simulated player (crowd simulator)"
    IMPORTED = "imported", "Imported rater (existing dataset)"
    MODEL = "model", "Model player"
    # Placeholder accounts that hold the anonymised votes and photo tombstones of erased accounts
    # (privacy.services.erasure): their votes count toward consensus, they never earn points.
    ERASED = "erased", "Erased account (anonymised)"


class Gender(models.TextChoices):
    UNSPECIFIED = "", "Prefer not to say"
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    OTHER = "other", "Other"


class PlayerProfile(models.Model):
    """What the game and the export need to know about a player beyond the auth user."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    kind = models.CharField(max_length=16, choices=PlayerKind.choices, default=PlayerKind.HUMAN, db_index=True)
    birth_year = models.PositiveSmallIntegerField(null=True, blank=True)
    gender = models.CharField(max_length=8, choices=Gender.choices, blank=True, default="")
    # Set when most of the player's recent votes were dropped as outliers; staff review these.
    flagged_outlier = models.BooleanField(default=False, db_index=True)
    flagged_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.user} ({self.kind})"


class PhotoStatus(models.TextChoices):
    ACTIVE = "active", "In the voting pool"
    HIDDEN = "hidden", "Hidden by staff"
    DELETED = "deleted", "Deleted by its uploader"


class PhotoSource(models.TextChoices):
    UPLOAD = "upload", "Uploaded by a player"
    IMPORT = "import", "Imported from a dataset"


class Split(models.TextChoices):
    NONE = "", "Not exported yet"
    TRAIN = "train", "train"
    VALID = "valid", "valid"
    TEST = "test", "test"


# The rater fit's default vote budget for a photo it has not seen (retirement's hard cap).
DEFAULT_POOL_BUDGET = 60


def default_pool_budget() -> int:
    return int(settings.APPAREAL.get("RETIRE_MAX_VOTES", DEFAULT_POOL_BUDGET))


# The voting pool: active, not retired, not gold, and within the vote budget of the last fit. The
# partial indexes below hold exactly these rows, and the next-photo SQL repeats the predicate.
POOL = Q(status=PhotoStatus.ACTIVE, retired_at__isnull=True, is_gold=False, n_votes__lt=F("pool_until_votes"))
GOLD_POOL = Q(status=PhotoStatus.ACTIVE, is_gold=True)


class Photo(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="photos")
    source = models.CharField(max_length=8, choices=PhotoSource.choices, default=PhotoSource.UPLOAD)
    # For idempotent imports: "<dataset>:<file name>"; empty for uploads.
    import_key = models.CharField(max_length=255, blank=True, default="")
    # The normalised original, private (PRIVATE_ROOT); the face crop is public media. Both are
    # emptied when the photo is deleted (privacy.services.withdrawal).
    image = models.ImageField(upload_to=original_upload_to, storage=private_storage)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    face_image = models.ImageField(upload_to=face_upload_to)
    # Face found in `image` (after the user's crop): box [x, y, w, h], landmarks, confidence, rotation.
    face = models.JSONField(default=dict)
    real_age = models.PositiveSmallIntegerField(validators=AGE_VALIDATORS)
    date_taken = models.DateField(null=True, blank=True)
    # Consent scopes (docs/privacy.md): the game is required to upload; research exports and model
    # training are opt-in and can be changed by the owner at any time.
    consent = models.BooleanField(default=False, verbose_name="consent: the game",
                                  help_text="Required: the face crop is shown to players who guess its age.")
    consent_export = models.BooleanField(default=False, verbose_name="consent: research exports",
                                         help_text="The photo may go into research dataset exports.")
    consent_training = models.BooleanField(default=False, verbose_name="consent: model training",
                                           help_text="The photo may be used to train the site's age models.")
    consent_changed_at = models.DateTimeField(null=True, blank=True)
    show_real_age = models.BooleanField(default=True, help_text="Show the real age to voters after they guess.")
    status = models.CharField(max_length=8, choices=PhotoStatus.choices, default=PhotoStatus.ACTIVE, db_index=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    is_simulated = models.BooleanField(default=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Consensus cache (all votes that count, i.e. not the model's).
    n_votes = models.PositiveIntegerField(default=0)
    n_kept = models.PositiveIntegerField(default=0)
    apparent_age = models.FloatField(null=True, blank=True)
    apparent_age_std = models.FloatField(null=True, blank=True)
    apparent_age_se = models.FloatField(null=True, blank=True)
    # Random key for "which photo next": a range scan from a random point instead of ORDER BY random().
    shuffle_key = models.FloatField(default=0.0)

    split = models.CharField(max_length=5, choices=Split.choices, blank=True, default=Split.NONE, db_index=True)

    # The rater-aware crowd (docs/crowd.md), written only by the rater fit (labeling.services.rater_fit);
    # the vote path never touches these. crowd_votes: the counting votes the estimate rests on.
    crowd_estimate = models.FloatField(null=True, blank=True)
    crowd_se = models.FloatField(null=True, blank=True)
    crowd_votes = models.PositiveIntegerField(default=0, db_default=0)
    # The voting pool until the next fit: the neediest level first (0 = neediest), and the photo is
    # served while n_votes < pool_until_votes and it is neither retired nor gold. A photo never
    # fitted may take votes up to the hard cap (raw inserts get the default cap of 60).
    need_level = models.SmallIntegerField(default=0, db_default=0)
    pool_until_votes = models.PositiveIntegerField(default=default_pool_budget, db_default=DEFAULT_POOL_BUDGET)
    retired_at = models.DateTimeField(null=True, blank=True)
    # Gold: a retired photo whose label staff fixed (gold_age); it anchors the rater fit and is
    # served to new players now and then. Never shown to players as such.
    is_gold = models.BooleanField(default=False, db_default=False)
    gold_age = models.FloatField(null=True, blank=True)

    # The active model's predictions (modeling app).
    predicted_apparent_age = models.FloatField(null=True, blank=True)
    predicted_real_age = models.FloatField(null=True, blank=True)
    predicted_by = models.ForeignKey(
        "modeling.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The next-photo read (labeling.selectors.voting): the neediest level of the pool, a
            # random point of the shuffle keys in it; the whole pool from a random point (exploring);
            # the gold photos from a random point.
            models.Index(fields=["need_level", "shuffle_key"], condition=POOL, name="photo_pool_level_idx"),
            models.Index(fields=["shuffle_key"], condition=POOL, name="photo_pool_key_idx"),
            models.Index(fields=["shuffle_key"], condition=GOLD_POOL, name="photo_gold_key_idx"),
            models.Index(fields=["owner", "status"], name="photo_owner_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["import_key"], condition=~Q(import_key=""), name="photo_import_key_unique"),
            models.CheckConstraint(condition=Q(real_age__gte=0) & Q(real_age__lte=100), name="photo_real_age_range"),
        ]

    def __str__(self):
        return f"Photo {self.pk} (real {self.real_age})"

    @property
    def is_visible(self) -> bool:
        return self.status == PhotoStatus.ACTIVE


class Vote(models.Model):
    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="votes")
    voter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="votes")
    age = models.PositiveSmallIntegerField(validators=AGE_VALIDATORS)
    # Copied from the voter's profile when cast: model votes never count toward consensus.
    voter_kind = models.CharField(max_length=16, choices=PlayerKind.choices, default=PlayerKind.HUMAN)
    # Whether the current consensus keeps this vote (outlier rule); maintained with the consensus.
    kept = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["photo", "voter"], name="one_vote_per_player_per_photo"),
            models.CheckConstraint(condition=Q(age__gte=0) & Q(age__lte=100), name="vote_age_range"),
        ]
        indexes = [models.Index(fields=["voter", "-created_at"], name="vote_voter_recent_idx")]

    def __str__(self):
        return f"{self.voter} says {self.age} on photo {self.photo_id}"


class PhotoReport(models.Model):
    class Reason(models.TextChoices):
        NOT_A_FACE = "not_a_face", "No face, or not a real person"
        SEVERAL_PEOPLE = "several", "More than one person"
        WRONG_AGE = "wrong_age", "The real age looks wrong"
        OFFENSIVE = "offensive", "Offensive or inappropriate"
        PRIVACY = "privacy", "Shared without permission"
        OTHER = "other", "Something else"

    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="reports")
    reporter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reports")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    comment = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["photo", "reporter"], name="one_report_per_player_per_photo")]

    def __str__(self):
        return f"Report on photo {self.photo_id}: {self.reason}"


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ExportPurpose(models.TextChoices):
    """What an export is for, and so which consent scope its photos need."""

    RESEARCH = "research", "Research dataset (photos consented for research exports)"
    TRAINING = "training", "Model training (photos consented for model training)"


class DatasetExport(models.Model):
    """One APPA-REAL-style export: who asked, when, what it holds, where the zip is."""

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="exports"
    )
    name = models.CharField(max_length=100, default="appareal")
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=ExportStatus.choices, default=ExportStatus.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)
    # Path of the zip relative to settings.PRIVATE_ROOT.
    file = models.CharField(max_length=255, blank=True, default="")
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, default="")
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    purpose = models.CharField(max_length=10, choices=ExportPurpose.choices, default=ExportPurpose.RESEARCH)
    # Lineage: the ids of the photos in the zip, sorted, as delta varints (privacy.codec).
    photo_ids = models.BinaryField(default=b"", blank=True)
    # Set when the zip (and the copies made from it) were deleted because a photo in it was withdrawn.
    files_purged_at = models.DateTimeField(null=True, blank=True)
    purge_reason = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Export {self.pk} ({self.status})"


class RaterEstimate(models.Model):
    """One player's rater parameters from the latest fit of the rater model (docs/crowd.md): how
    many years too old (+) or too young (-) they guess, overall and per age band of the face, and
    how much their guesses scatter, each with its standard error. Written only by the rater fit."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
                                related_name="rater_estimate")
    n_votes = models.PositiveIntegerField(default=0)
    bias = models.FloatField()
    bias_se = models.FloatField()
    # Per bias band of the face (the fit's band_edges: under 20, 20-39, 40-59, 60+), overall bias included.
    band_bias = models.JSONField(default=list)
    band_bias_se = models.JSONField(default=list)
    band_votes = models.JSONField(default=list)
    # The Gaussian-equivalent SD of the player's votes on a face of noise factor 1 ("scatter").
    noise = models.FloatField()
    noise_se = models.FloatField()
    fit = models.ForeignKey("RaterFitRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    fitted_at = models.DateTimeField()

    def __str__(self):
        return f"rater {self.user_id}: bias {self.bias:+.1f}, noise {self.noise:.1f}"


class RaterFitStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class RaterFitRun(models.Model):
    """One run of the rater fit: what it read, how the EM went, the population it found. The latest
    succeeded run's population is the prior of players it has not seen; its max_vote_id tells the
    periodic tick how many votes arrived since."""

    status = models.CharField(max_length=10, choices=RaterFitStatus.choices, default=RaterFitStatus.RUNNING)
    trigger = models.CharField(max_length=32, blank=True, default="")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    votes = models.PositiveIntegerField(default=0)
    photos = models.PositiveIntegerField(default=0)
    raters = models.PositiveIntegerField(default=0)
    gold_photos = models.PositiveIntegerField(default=0)
    max_vote_id = models.BigIntegerField(default=0)
    iterations = models.PositiveIntegerField(default=0)
    converged = models.BooleanField(default=False)
    # Photos written, not written (no change), left for the next fit (a vote arrived while fitting);
    # photos retired after the fit.
    photos_updated = models.PositiveIntegerField(default=0)
    photos_unchanged = models.PositiveIntegerField(default=0)
    photos_skipped = models.PositiveIntegerField(default=0)
    photos_retired = models.PositiveIntegerField(default=0)
    # RaterPopulation.to_dict() plus band_edges, noise_band_edges, t_dof, and the rule it applied.
    population = models.JSONField(default=dict, blank=True)
    # Seconds per step: read, fit, write.
    timings = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at", "-pk"]
        constraints = [
            # One fit at a time (on PostgreSQL an advisory lock guards it as well).
            models.UniqueConstraint(fields=["status"], condition=Q(status="running"), name="one_running_rater_fit"),
        ]

    def __str__(self):
        return f"Rater fit {self.pk} ({self.status})"

"""Points ledger, per-player totals for fast boards, and friendships.

The ledger (`PointsAward`) is the truth: one row per award, with its reason. `PlayerTotal` and
`PlayerWeekTotal` are running sums of it, kept in the same transaction as the award so boards never
sum the ledger; `manage.py rebuild_ledger` re-derives ledger and totals from votes and uploads and
reports any difference. All writes go through `leaderboard.services`.
"""
from django.conf import settings
from django.db import models
from django.db.models import F, Q


class AwardReason(models.TextChoices):
    VOTE = "vote", "Guess scored"
    UPLOAD = "upload", "Upload accepted"


class PointsAward(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="awards")
    reason = models.CharField(max_length=8, choices=AwardReason.choices)
    points = models.PositiveSmallIntegerField()
    photo = models.ForeignKey("labeling.Photo", on_delete=models.CASCADE, related_name="+")
    # Set for vote awards: one award per vote, ever.
    vote = models.OneToOneField("labeling.Vote", null=True, blank=True, on_delete=models.CASCADE, related_name="award")
    # For vote awards: the leave-one-out apparent age the guess was compared with.
    scored_against = models.FloatField(null=True, blank=True)
    # When the award was earned: the creation time of the vote that made a guess scorable, or of
    # the upload. Derived from the data (not "now") so that a rebuild dates every award identically.
    awarded_at = models.DateTimeField()
    # Monday of the ISO week of awarded_at (UTC): the weekly boards' key.
    week = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["photo"], condition=Q(reason="upload"), name="one_upload_award_per_photo"),
            models.CheckConstraint(
                condition=(Q(reason="vote") & Q(vote__isnull=False)) | (Q(reason="upload") & Q(vote__isnull=True)),
                name="award_reason_matches_vote",
            ),
        ]
        indexes = [models.Index(fields=["user", "-awarded_at"], name="award_user_recent_idx")]

    def __str__(self):
        return f"+{self.points} to {self.user_id} ({self.reason})"


class PlayerTotal(models.Model):
    """All-time points of one player; exists only for players who were ever awarded points."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="points_total")
    points = models.BigIntegerField(default=0)

    class Meta:
        # Boards read "points desc, user asc" straight from this index; ranks count rows above.
        indexes = [models.Index(F("points").desc(), F("user").asc(), name="total_board_idx")]

    def __str__(self):
        return f"{self.user_id}: {self.points}"


class PlayerWeekTotal(models.Model):
    """Points of one player in one ISO week (week = its Monday)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="week_totals")
    week = models.DateField()
    points = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "week"], name="one_total_per_player_week")]
        indexes = [models.Index(F("week").asc(), F("points").desc(), F("user").asc(), name="week_board_idx")]

    def __str__(self):
        return f"{self.user_id} week {self.week}: {self.points}"


class PointsLevel(models.Model):
    """How many players have exactly `points` all-time points (points > 0): a players-per-points
    histogram, so "my rank" = 1 + the players on the levels above mine, a sum over at most a few
    thousand small rows instead of a count over every player above.

    Kept exact by database triggers on PlayerTotal (migration 0002), so every writer (the vote path,
    `rebuild_ledger`, the admin, fixtures) updates it in its own transaction; `rebuild_ledger`
    checks it against the totals.
    """

    points = models.BigIntegerField(primary_key=True)
    players = models.IntegerField(default=0)

    def __str__(self):
        return f"{self.players} player(s) with {self.points}"


class WeekPointsLevel(models.Model):
    """The same histogram per ISO week, kept by triggers on PlayerWeekTotal."""

    week = models.DateField()
    points = models.BigIntegerField()
    players = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["week", "points"], name="one_level_per_week_points")]

    def __str__(self):
        return f"week {self.week}: {self.players} player(s) with {self.points}"


class FriendRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"
    CANCELLED = "cancelled", "Cancelled"


class FriendRequest(models.Model):
    from_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="friend_requests_sent")
    to_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="friend_requests_received")
    status = models.CharField(max_length=10, choices=FriendRequestStatus.choices, default=FriendRequestStatus.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    responded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["from_user", "to_user"], condition=Q(status="pending"), name="one_pending_request_per_pair"
            ),
            models.CheckConstraint(condition=~Q(from_user=F("to_user")), name="no_request_to_self"),
        ]

    def __str__(self):
        return f"{self.from_user_id} -> {self.to_user_id} ({self.status})"


class Friendship(models.Model):
    """Stored in both directions (two rows per friendship) so "my friends" is one indexed lookup."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="friendships")
    friend = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "friend"], name="one_friendship_per_pair"),
            models.CheckConstraint(condition=~Q(user=F("friend")), name="no_friendship_with_self"),
        ]

    def __str__(self):
        return f"{self.user_id} <-> {self.friend_id}"

"""Shapes of the game's API: strict input parsing and documented outputs (no logic here)."""
import re

from rest_framework import serializers

from labeling.services.vote_outcomes import MAX_AGE, MIN_AGE

_WHOLE_NUMBER = re.compile(r"^\s*-?\d{1,6}\s*$")


class WholeYearsField(serializers.IntegerField):
    """An age in whole years. Unlike IntegerField it refuses 3.5, 30.0, "3.0", true and lists:
    a guess is typed as a whole number, and anything else is a client bug worth a clear 400."""

    default_error_messages = {
        "invalid": "Give the age as a whole number of years, e.g. 34.",
        "max_value": f"The age must be between {MIN_AGE} and {MAX_AGE}.",
        "min_value": f"The age must be between {MIN_AGE} and {MAX_AGE}.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", MIN_AGE)
        kwargs.setdefault("max_value", MAX_AGE)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, int):
            return data
        if isinstance(data, str) and _WHOLE_NUMBER.match(data):
            return int(data)
        self.fail("invalid")


class VoteInputSerializer(serializers.Serializer):
    age = WholeYearsField(help_text="Your guess: how old the person looks, whole years 0-100.")


class PhotoCardSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    face_url = serializers.CharField(help_text="URL of the face crop to show.")


class ConsensusSerializer(serializers.Serializer):
    apparent_age = serializers.FloatField(allow_null=True, help_text="Mean of the kept votes.")
    apparent_age_std = serializers.FloatField(allow_null=True)
    apparent_age_se = serializers.FloatField(allow_null=True)
    n_votes = serializers.IntegerField(help_text="Votes that count (the model's never do).")
    n_kept = serializers.IntegerField(help_text="Votes kept by the outlier rule.")


class MyVoteSerializer(serializers.Serializer):
    age = serializers.IntegerField()
    kept = serializers.BooleanField()
    points = serializers.IntegerField(allow_null=True, help_text="Null while pending or when you earn no points.")
    pending = serializers.BooleanField()


class PhotoDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    face_url = serializers.CharField()
    status = serializers.CharField()
    is_own = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    consensus = ConsensusSerializer(allow_null=True, help_text="Null until you have guessed (so it cannot anchor you).")
    real_age = serializers.IntegerField(allow_null=True, help_text="After guessing, when the uploader allows it.")
    predicted_apparent_age = serializers.FloatField(allow_null=True, help_text="The model's guess, after guessing.")
    my_vote = MyVoteSerializer(allow_null=True)


class VoteResultSerializer(serializers.Serializer):
    vote_id = serializers.IntegerField()
    age = serializers.IntegerField()
    kept = serializers.BooleanField(help_text="Whether the outlier rule keeps your vote right now.")
    points = serializers.IntegerField(allow_null=True, help_text="Null while pending (or if you earn no points).")
    pending = serializers.BooleanField()
    votes_needed = serializers.IntegerField(allow_null=True, help_text="While pending: more guesses needed.")
    consensus = ConsensusSerializer()
    real_age = serializers.IntegerField(allow_null=True)
    predicted_apparent_age = serializers.FloatField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()

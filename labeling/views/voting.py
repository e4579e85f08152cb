"""The game's page and API: validate, call one service or selector, render."""
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from labeling.scoring import earns_points
from labeling.selectors.voting import may_see_consensus, next_photo_for, visible_photo, vote_of
from labeling.serializers_voting import (
    ErrorSerializer,
    PhotoCardSerializer,
    PhotoDetailSerializer,
    VoteInputSerializer,
    VoteResultSerializer,
)
from labeling.services.vote_rate_limit import take_vote_token
from labeling.services.votes import VoteRejected, cast_vote
from modelhub.selectors import you_vs_model


@login_required
def vote_page(request):
    return render(request, "labeling/vote.html", {"you_vs_dex": you_vs_model(request.user)})


def _face_url(photo) -> str:
    return photo.face_image.url if photo.face_image else ""


def _consensus(photo) -> dict:
    return {
        "apparent_age": photo.apparent_age,
        "apparent_age_std": photo.apparent_age_std,
        "apparent_age_se": photo.apparent_age_se,
        "n_votes": photo.n_votes,
        "n_kept": photo.n_kept,
    }


class VoteRateThrottle(BaseThrottle):
    """Per-player token bucket (APPAREAL VOTE_RATE_PER_SECOND sustained, VOTE_RATE_BURST burst)."""

    def allow_request(self, request, view):
        if request.method != "POST" or not request.user.is_authenticated:
            return True
        self._wait = take_vote_token(request.user.pk)
        return self._wait is None

    def wait(self):
        return getattr(self, "_wait", None)


class NextPhotoView(APIView):
    @extend_schema(
        summary="A photo to guess",
        responses={200: PhotoCardSerializer, 204: OpenApiResponse(description="Nothing left for you to guess.")},
    )
    def get(self, request):
        photo = next_photo_for(request.user)
        if photo is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response({"id": photo.pk, "face_url": _face_url(photo)})


class PhotoDetailView(APIView):
    @extend_schema(
        summary="A photo's public fields and, once you have guessed, its consensus",
        responses={200: PhotoDetailSerializer, 404: ErrorSerializer},
    )
    def get(self, request, pk: int):
        photo = visible_photo(request.user, pk)
        if photo is None:
            raise Http404("No such photo.")
        vote = vote_of(request.user, photo.pk)
        revealed = may_see_consensus(request.user, photo, vote)
        my_vote = None
        if vote is not None:
            award = getattr(vote, "award", None)  # reverse one-to-one: absent while pending
            my_vote = {
                "age": vote.age,
                "kept": vote.kept,
                "points": award.points if award else None,
                "pending": award is None and earns_points(vote.voter_kind),
            }
        return Response(
            {
                "id": photo.pk,
                "face_url": _face_url(photo),
                "status": photo.status,
                "is_own": photo.owner_id == request.user.pk,
                "created_at": photo.created_at,
                "consensus": _consensus(photo) if revealed else None,
                "real_age": photo.real_age if revealed and (photo.show_real_age or photo.owner_id == request.user.pk) else None,
                "predicted_apparent_age": photo.predicted_apparent_age if revealed else None,
                "my_vote": my_vote,
            }
        )


class DepthSafeJSONParser(JSONParser):
    """DRF's JSON parser, with a 400 instead of a 500 for a body nested deeper than Python's
    recursion limit (e.g. a thousand "[")."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None


class PhotoVotesView(APIView):
    throttle_classes = [VoteRateThrottle]
    parser_classes = [DepthSafeJSONParser, FormParser, MultiPartParser]  # DRF's defaults, JSON depth-safe

    @extend_schema(
        summary="Guess how old the person looks",
        request=VoteInputSerializer,
        responses={
            201: VoteResultSerializer,
            400: OpenApiResponse(description="Bad age: `{age: [message]}`."),
            403: ErrorSerializer,
            404: ErrorSerializer,
            409: ErrorSerializer,
            429: ErrorSerializer,
        },
    )
    def post(self, request, pk: int):
        serializer = VoteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            outcome = cast_vote(voter=request.user, photo_id=pk, age=serializer.validated_data["age"])
        except VoteRejected as rejected:
            return Response({"detail": rejected.message}, status=rejected.status_code)
        return Response(vote_result(outcome), status=status.HTTP_201_CREATED)


def stored_vote_result(row, age: int) -> dict:
    """The same answer from the row of `labeling.services.vote_function.store_vote` (appareal_site.fast_vote_route's
    route on PostgreSQL: no model instances to build)."""
    return {
        "vote_id": row.vote_id,
        "age": age,
        "kept": row.kept,
        "points": row.points,
        "pending": row.pending,
        "votes_needed": row.votes_needed,
        "consensus": {
            "apparent_age": row.apparent_age,
            "apparent_age_std": row.apparent_age_std,
            "apparent_age_se": row.apparent_age_se,
            "n_votes": row.n_votes,
            "n_kept": row.n_kept,
        },
        "real_age": row.real_age if row.show_real_age else None,
        "predicted_apparent_age": row.predicted_apparent_age,
    }


def vote_result(outcome) -> dict:
    """The 201 answer to a vote (VoteResultSerializer's shape); also appareal_site.fast_vote_route's."""
    photo = outcome.photo
    return {
        "vote_id": outcome.vote.pk,
        "age": outcome.vote.age,
        "kept": outcome.vote.kept,
        "points": outcome.points,
        "pending": outcome.pending,
        "votes_needed": outcome.votes_needed,
        "consensus": _consensus(photo),
        "real_age": photo.real_age if photo.show_real_age else None,
        "predicted_apparent_age": photo.predicted_apparent_age,
    }

"""The rater-aware crowd's API: a player's bias card (GET /api/me/rater/) and, for staff, gold
photos (GET/POST /api/staff/gold/). Validate, call one service or selector, render."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from appareal_site.api import error
from labeling.selectors.raters import bias_card, gold_photos
from labeling.services.gold import GoldRefused, set_gold


class BiasLineSerializer(serializers.Serializer):
    bias = serializers.FloatField(allow_null=True, help_text="Years too old (+) or too young (-).")
    bias_se = serializers.FloatField(allow_null=True, help_text="The estimate's standard error (years).")
    votes = serializers.IntegerField()
    meaningful = serializers.BooleanField(help_text="Enough guesses for the estimate to mean something.")
    text = serializers.CharField()


class BandLineSerializer(BiasLineSerializer):
    band = serializers.CharField(help_text="The faces' age band, e.g. 'people over 60'.")
    min_age = serializers.IntegerField()
    max_age = serializers.IntegerField(allow_null=True)


class ScatterSerializer(serializers.Serializer):
    noise = serializers.FloatField(allow_null=True, help_text="SD of your guesses around your bias (years).")
    noise_se = serializers.FloatField(allow_null=True)
    meaningful = serializers.BooleanField()
    text = serializers.CharField()


class BiasCardSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["no_votes", "not_fitted_yet", "fitted"])
    message = serializers.CharField()
    votes = serializers.IntegerField(help_text="Your guesses (all of them; the card rests on the fitted ones).")
    fitted_votes = serializers.IntegerField(help_text="Guesses the latest fit of the rater model saw.")
    fitted_at = serializers.DateTimeField(allow_null=True)
    overall = BiasLineSerializer(allow_null=True)
    scatter = ScatterSerializer(allow_null=True)
    bands = BandLineSerializer(many=True)


class MyRaterView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=BiasCardSerializer, summary="Your bias card: how you guess, by the rater model")
    def get(self, request):
        return Response(BiasCardSerializer(bias_card(request.user)).data)


class GoldInputSerializer(serializers.Serializer):
    photo_ids = serializers.ListField(child=serializers.JSONField(), allow_empty=False, max_length=1000,
                                      help_text="Ids of retired photos.")
    gold = serializers.BooleanField(required=False, default=True, help_text="false: no longer gold.")


class GoldPhotoSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    gold_age = serializers.FloatField()
    n_votes = serializers.IntegerField()
    crowd_se = serializers.FloatField(allow_null=True)
    retired_at = serializers.DateTimeField(allow_null=True)


class GoldPhotosView(APIView):
    """Staff: the gold photos, and marking retired photos as gold (or not)."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses=GoldPhotoSerializer(many=True), summary="Gold photos (staff)")
    def get(self, request):
        return Response(GoldPhotoSerializer(gold_photos(), many=True).data)

    @extend_schema(request=GoldInputSerializer,
                   responses={200: inline_serializer("GoldChanged", {"changed": serializers.ListField(
                       child=serializers.IntegerField())})},
                   summary="Mark retired photos as gold, or unmark them (staff; all or nothing)")
    def post(self, request):
        incoming = GoldInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            changed = set_gold(**incoming.validated_data)
        except GoldRefused as exc:
            return error(exc.message, exc.status)
        return Response({"changed": changed}, status=status.HTTP_200_OK)

"""Leaderboard and friends: pages and API. They validate, call one service or selector, render."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors
from .services import friends

# --- API shapes (documentation and input parsing only) -----------------------------------------


class BoardRowSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    username = serializers.CharField()
    points = serializers.IntegerField()
    is_me = serializers.BooleanField()


class MyRankSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    points = serializers.IntegerField()


class BoardSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=selectors.SCOPES)
    period = serializers.ChoiceField(choices=selectors.PERIODS)
    week = serializers.DateField(allow_null=True, help_text="Monday of the ISO week (UTC) for period=week.")
    results = BoardRowSerializer(many=True)
    me = MyRankSerializer(allow_null=True, help_text="Null for players who do not earn points.")


class BoardQuerySerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=selectors.SCOPES, default="global")
    period = serializers.ChoiceField(choices=selectors.PERIODS, default="all")


class FriendSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    points = serializers.IntegerField()
    week_points = serializers.IntegerField()
    since = serializers.DateTimeField()


class FriendRequestSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    from_username = serializers.CharField(source="from_user.username")
    to_username = serializers.CharField(source="to_user.username")
    status = serializers.CharField()
    created_at = serializers.DateTimeField()


class FriendRequestListSerializer(serializers.Serializer):
    incoming = FriendRequestSerializer(many=True)
    outgoing = FriendRequestSerializer(many=True)


class FriendRequestInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


def _error(exc: friends.FriendshipError) -> Response:
    body = {exc.field: [exc.message]} if exc.field and exc.status_code == 400 else {"detail": exc.message}
    return Response(body, status=exc.status_code)


# --- API -----------------------------------------------------------------------------------------


class LeaderboardView(APIView):
    @extend_schema(
        summary="Top 50 and my rank",
        parameters=[
            OpenApiParameter("scope", OpenApiTypes.STR, enum=list(selectors.SCOPES), default="global"),
            OpenApiParameter("period", OpenApiTypes.STR, enum=list(selectors.PERIODS), default="all"),
        ],
        responses={200: BoardSerializer, 400: OpenApiResponse(description="Unknown scope or period.")},
    )
    def get(self, request):
        query = BoardQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        # The selector already returns the documented shape in plain types (BoardSerializer
        # documents it); passing it through the serializer cost a third of the request's CPU.
        return Response(selectors.leaderboard(request.user, **query.validated_data))


class FriendsView(APIView):
    @extend_schema(summary="My friends with their points", responses={200: FriendSerializer(many=True)})
    def get(self, request):
        return Response(FriendSerializer(selectors.friends_with_points(request.user), many=True).data)


class FriendSuggestionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class FriendSuggestionsView(APIView):
    @extend_schema(
        summary="Facebook friends (social login) who play here and are not your friends yet",
        responses={200: FriendSuggestionSerializer(many=True)},
    )
    def get(self, request):
        return Response(selectors.social_friend_suggestions(request.user))


class FriendView(APIView):
    @extend_schema(summary="Remove a friend", responses={204: None, 404: DetailSerializer})
    def delete(self, request, user_id: int):
        try:
            friends.remove_friend(user=request.user, friend_id=user_id)
        except friends.FriendshipError as exc:
            return _error(exc)
        return Response(status=status.HTTP_204_NO_CONTENT)


class FriendRequestsView(APIView):
    @extend_schema(summary="My pending friend requests", responses={200: FriendRequestListSerializer})
    def get(self, request):
        return Response(FriendRequestListSerializer(selectors.friend_requests(request.user)).data)

    @extend_schema(
        summary="Ask a player to be friends (accepts theirs if they already asked you)",
        request=FriendRequestInputSerializer,
        responses={201: FriendRequestSerializer, 400: OpenApiResponse(description="`{username: [message]}`"), 409: DetailSerializer},
    )
    def post(self, request):
        data = FriendRequestInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            friend_request = friends.send_friend_request(from_user=request.user, username=data.validated_data["username"])
        except friends.FriendshipError as exc:
            return _error(exc)
        return Response(FriendRequestSerializer(friend_request).data, status=status.HTTP_201_CREATED)


class FriendRequestActionView(APIView):
    action_name = ""
    actions = {
        "accept": friends.accept_friend_request,
        "decline": friends.decline_friend_request,
        "cancel": friends.cancel_friend_request,
    }

    @extend_schema(request=None, responses={200: FriendRequestSerializer, 404: DetailSerializer})
    def post(self, request, pk: int):
        try:
            friend_request = self.actions[self.action_name](user=request.user, request_id=pk)
        except friends.FriendshipError as exc:
            return _error(exc)
        return Response(FriendRequestSerializer(friend_request).data)


# --- pages -----------------------------------------------------------------------------------------


@login_required
def leaderboard_page(request):
    query = BoardQuerySerializer(data=request.GET)
    params = query.validated_data if query.is_valid() else {"scope": "global", "period": "all"}
    board = selectors.leaderboard(request.user, **params)
    return render(
        request,
        "leaderboard/leaderboard.html",
        {"board": board, "scopes": selectors.SCOPES, "periods": selectors.PERIODS},
    )


@login_required
def friends_page(request):
    return render(
        request,
        "leaderboard/friends.html",
        {
            "friends": selectors.friends_with_points(request.user),
            "suggestions": selectors.social_friend_suggestions(request.user),
            **selectors.friend_requests(request.user),
        },
    )


@login_required
@require_POST
def friend_request_page(request):
    try:
        friend_request = friends.send_friend_request(from_user=request.user, username=request.POST.get("username", ""))
    except friends.FriendshipError as exc:
        messages.error(request, exc.message)
    else:
        if friend_request.status == "accepted":
            messages.success(request, f"You and {friend_request.from_user.username} are now friends.")
        else:
            messages.success(request, f"Friend request sent to {friend_request.to_user.username}.")
    return redirect("friends")


@login_required
@require_POST
def friend_request_action_page(request, pk: int, action: str):
    handler = FriendRequestActionView.actions.get(action)
    if handler is None:
        messages.error(request, "Unknown action.")
        return redirect("friends")
    try:
        friend_request = handler(user=request.user, request_id=pk)
    except friends.FriendshipError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Request {friend_request.get_status_display().lower()}.")
    return redirect("friends")


@login_required
@require_POST
def friend_remove_page(request, user_id: int):
    try:
        friends.remove_friend(user=request.user, friend_id=user_id)
    except friends.FriendshipError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Friend removed.")
    return redirect("friends")

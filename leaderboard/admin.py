from django.contrib import admin

from .models import FriendRequest, Friendship, PlayerTotal, PlayerWeekTotal, PointsAward


@admin.register(PointsAward)
class PointsAwardAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "reason", "points", "photo_id", "vote_id", "awarded_at", "week")
    list_filter = ("reason", "week")
    search_fields = ("user__username",)
    raw_id_fields = ("user", "photo", "vote")

    # The ledger is written only by services (and rebuilt by `manage.py rebuild_ledger`).
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(PlayerTotal)
class PlayerTotalAdmin(admin.ModelAdmin):
    list_display = ("user", "points")
    search_fields = ("user__username",)
    ordering = ("-points",)
    raw_id_fields = ("user",)


@admin.register(PlayerWeekTotal)
class PlayerWeekTotalAdmin(admin.ModelAdmin):
    list_display = ("user", "week", "points")
    list_filter = ("week",)
    search_fields = ("user__username",)
    raw_id_fields = ("user",)


@admin.register(FriendRequest)
class FriendRequestAdmin(admin.ModelAdmin):
    list_display = ("from_user", "to_user", "status", "created_at", "responded_at")
    list_filter = ("status",)
    raw_id_fields = ("from_user", "to_user")


@admin.register(Friendship)
class FriendshipAdmin(admin.ModelAdmin):
    list_display = ("user", "friend", "created_at")
    raw_id_fields = ("user", "friend")
